"""A benchmark report as text: one line per number, and the comparison tables of docs/benchmarks.md in Markdown."""

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
    counting = info.get("counting")
    if isinstance(counting, dict):
        lines.append(f"counting, lines {counting['line']}: {counting['true_crossings']} true crossings, count error "
                     f"{counting['count_error']}")
        for name, result in counting["sequences"].items():
            lines.append(f"  {name}: true {result['true']}, counted {result['counted']}, net error "
                         f"{result['net_error']:+d}, count error {result['count_error']}")
    elif isinstance(counting, str):
        lines.append(f"counting: {counting}")
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
    """The comparison tables of docs/benchmarks.md from a report (those whose measurements it holds), as Markdown."""
    latency, info = report.get("latency_ms", {}), report.get("info", {})
    sections = _classifier_tables(latency, info.get("classifiers", {}).get("variants", {}))
    if info.get("latency", {}).get("complexity"):
        sections.append(_detector_table(latency, info["latency"]))
    if info.get("formats"):
        sections.append(_formats_table(report))
    if isinstance(info.get("counting"), dict):
        sections.append(_counting_table(info["counting"]))
    if info.get("slicing"):
        sections.append(_slicing_table(report))
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


def _formats_table(report: Report) -> str:
    """Every export format and precision: size, latency and its ratio to torchvision's, parity, AP."""
    latency, ratios, accuracy = report["latency_ms"], report["ratios"], report["accuracy"]
    info = report["info"]["formats"]
    ap_eager = accuracy.get("formats_ap_eager")
    lines = [
        "| format | size | latency | vs torchvision | parity with eager (score >= 0.3) | AP | AP change |",
        "|---|---|---|---|---|---|---|",
        f"| eager (PyTorch) | | {latency['formats_eager']:.2f} ms | "
        f"{ratios['formats_eager_vs_tv_v3']:.2f}x | | {_ap(ap_eager)} | |",
    ]
    for key, size in info["size_mb"].items():
        if f"formats_{key}" not in latency:
            lines.append(f"| {key} | {size:.2f} MB | {info['not_measured'].get(key, 'not run')} | | | | |")
            continue
        parity = info["parity_vs_eager"][key]
        ap = accuracy.get(f"formats_ap_{key}")
        change = f"{ap - ap_eager:+.2f}" if ap is not None and ap_eager is not None else ""
        lines.append(
            f"| {key} | {size:.2f} MB | {latency[f'formats_{key}']:.2f} ms | {ratios[f'formats_{key}_vs_tv_v3']:.2f}x "
            f"| {parity['frames_with_same_count']} frames same count, boxes within "
            f"{parity['max_box_difference_px']:.2f} px | {_ap(ap)} | {change} |"
        )
    for key, note in info["not_measured"].items():
        if key not in info["size_mb"]:
            lines.append(f"| {key} | | {note} | | | | |")
    lines.append(f"| torchvision ssdlite320_mobilenet_v3_large | | {latency['formats_tv_ssdlite_v3']:.2f} ms | 1.00x "
                 "| | | |")
    return "Export formats end to end (batch 1, 640 x 480 uint8 frame in, detections out)\n\n" + "\n".join(lines)


def _counting_table(info: dict[str, Any]) -> str:
    """True vs counted line crossings per sequence, per class, with the errors."""

    from ssdlite_runtime.counting import per_class_text as per_class

    lines = [
        "| sequence, line | true in | counted in | true out | counted out | net error | count error |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in info["sequences"].items():
        true, counted = result["true"], result["counted"]
        lines.append(f"| {name} | {per_class(true['in'])} | {per_class(counted['in'])} | {per_class(true['out'])} | "
                     f"{per_class(counted['out'])} | {result['net_error']:+d} | {result['count_error']} |")
    return (f"Counting: lines {info['line']}, {info['videos']}; {info['true_crossings']} true crossings, "
            f"count error {info['count_error']}\n\n" + "\n".join(lines))


def _slicing_table(report: Report) -> str:
    """AP, AP50, AP_small and time per image of the full frame alone and of each tile size."""
    accuracy, latency, info = report["accuracy"], report["latency_ms"], report["info"]["slicing"]
    lines = ["| views | tiles per image | AP | AP50 | AP_small | time per image |", "|---|---|---|---|---|---|"]
    for key, tiles in info["tiles_per_image"].items():
        views = "full frame" if key == "full_frame" else f"{key.removeprefix('tiles_')} px tiles + full frame"
        lines.append(f"| {views} | {tiles} | {accuracy[f'slicing_ap_{key}']:.1f} | {accuracy[f'slicing_ap50_{key}']:.1f} "
                     f"| {accuracy[f'slicing_ap_small_{key}']:.1f} | {latency[f'slicing_{key}_per_image']:.0f} ms |")
    return (f"Sliced inference: {info['frames']} ({info['objects']} objects, {info['small_objects']} small), "
            f"{info['model']} (input {info['input_size']}), overlap {info['overlap']:g}\n\n" + "\n".join(lines))


def _ap(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
