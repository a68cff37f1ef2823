"""A benchmark report as text: one line per number, and the README's comparison tables in Markdown."""

from __future__ import annotations

from typing import Any

from ssdlite.models.complexity import human

Report = dict[str, dict[str, Any]]

SECTION_UNITS = {"latency_ms": "ms", "throughput": "/s", "ratios": "x", "accuracy": "AP points"}

_CLASSIFIER_HEADER = (
    "| model | width | input | params | MACs | eager (BN folded) | ONNX Runtime |\n"
    "|---|---|---|---|---|---|---|"
)


def format_report(report: Report) -> str:
    """The report as a readable table: one line per number, grouped by section; then the machine load."""
    lines = []
    for section, unit in SECTION_UNITS.items():
        values = report.get(section) or {}
        if not values:
            continue
        lines.append(f"{section} ({unit})")
        width = max(len(key) for key in values)
        lines.extend(f"  {key:<{width}}  {value:10.3f}" for key, value in values.items())
    info = report.get("info", {})
    if isinstance(info.get("int8_accuracy"), str):
        lines.append(f"accuracy: {info['int8_accuracy']}")
    machine = info.get("machine")
    if machine:
        lines.append(
            f"machine: {machine['cpus']} CPUs, load average (1/5/15 min) before {machine['load_average_1_5_15_min_before']}"
            f", after {machine['load_average_1_5_15_min_after']}"
        )
        for name, load in machine.get("load_by_measurement", {}).items():
            lines.append(
                f"  {name}: {load['seconds']} s, 1-min load {load['load_1_min_at_start']} -> {load['load_1_min_at_end']}"
            )
    return "\n".join(lines)


def markdown_tables(report: Report) -> str:
    """The README's comparison tables from a report (those whose measurements it holds), as Markdown."""
    latency, info = report.get("latency_ms", {}), report.get("info", {})
    sections = _classifier_tables(latency, info.get("classifiers", {}).get("variants", {}))
    if info.get("latency", {}).get("complexity"):
        sections.append(_detector_table(latency, info["latency"]))
    return "\n\n".join(sections)


def _ms_fps(value: float) -> str:
    return f"{value:.2f} ms ({1000.0 / value:.0f} fps)"


def _classifier_tables(latency: dict[str, float], variants: dict[str, dict[str, Any]]) -> list[str]:
    """MobileNetV1 vs MobileNetV2 (width 1.0 at 224), then every width and resolution multiplier measured."""

    def row(key: str) -> str:
        facts = variants[key]
        return (f"| {facts['model']} | {facts['width_mult']} | {facts['image_size']} | {human(facts['params'])} | "
                f"{human(facts['macs'])} | {_ms_fps(latency[f'classifier_{key}_eager'])} | "
                f"{_ms_fps(latency[f'classifier_{key}_ort'])} |")

    tables = []
    full = [key for key, facts in variants.items() if facts["width_mult"] == 1.0 and facts["image_size"] == 224]
    if full:
        tables.append("MobileNetV1 vs MobileNetV2 (1000 classes, batch 1)\n\n" + _CLASSIFIER_HEADER + "\n"
                      + "\n".join(row(key) for key in full))
    if len(variants) > len(full):
        tables.append("Width and resolution multipliers (batch 1)\n\n" + _CLASSIFIER_HEADER + "\n"
                      + "\n".join(row(key) for key in variants))
    return tables


def _detector_table(latency: dict[str, float], info: dict[str, Any]) -> str:
    """Our detector (eager, ONNX Runtime, INT8) next to torchvision's SSDLite320-MobileNetV3-Large."""
    ours, theirs = info["complexity"]["ours"], info["complexity"]["tv_ssdlite_v3"]
    lines = [
        "| detector | input | params | MACs | eager | ONNX Runtime | INT8 (ONNX Runtime) |",
        "|---|---|---|---|---|---|---|",
        f"| ours, {info['model']} | {ours['image_size']} | {human(ours['params'])} | "
        f"{human(ours['macs'])} | {latency['ours_eager']:.2f} ms | {latency['ours_ort']:.2f} ms | "
        f"{latency['ours_int8']:.2f} ms |",
        f"| torchvision ssdlite320_mobilenet_v3_large | {theirs['image_size']} | {human(theirs['params'])} | "
        f"{human(theirs['macs'])} | {latency['tv_ssdlite_v3']:.2f} ms | | |",
    ]
    return "Detectors end to end (batch 1, uint8 frame in, detections out)\n\n" + "\n".join(lines)
