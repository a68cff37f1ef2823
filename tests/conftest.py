"""Suite-wide test settings.

`make test` runs two pytest workers on two cores; each test uses one intra-op thread so the workers do not
oversubscribe the cores (tiny networks ran 10-30x slower with two threads per worker on a loaded machine).
Subprocesses started by tests inherit OMP_NUM_THREADS=1 for the same reason.

One thread is set when this file is imported, so module- and session-scoped fixtures (the tiny shapes datasets,
the overfitted tiny detector) run with it too, and :func:`single_thread` puts it back around every test; test
files and helpers rely on this fixture and do not set the thread count themselves.

Under ``--dist loadgroup`` the tests of one ``xdist_group`` run on one worker (see
:func:`pytest_collection_modifyitems`), so the module fixtures they share are built once; a module whose tests share
a module-scoped fixture is a group of its own without a marker. Artefacts that tests of several groups use are built
once per run across the workers (tests/shared_files.py). Groups and slow tests are handed out first.
"""

import os

import pytest
import torch

from tests import shared_files

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", autouse=True)
def shared_run_folder(tmp_path_factory):
    """Points tests/shared_files.py at this run's temporary folder, before any test asks for a shared file."""
    shared_files.use_run_folder(tmp_path_factory.getbasetemp())


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keeps the tests of each ``xdist_group`` on one worker under ``--dist loadgroup``, as pytest-xdist documents.

    An xdist worker names a test's group by appending ``@GROUP`` to its node id, and the scheduler sends the tests
    with one suffix to one worker. pytest 9.2 keeps node ids in a structured field that pytest-xdist 3.8 does not
    write, so no suffix was added and every group was spread over both workers, each building the group's module
    fixtures (pytest-dev/pytest-xdist#1386). This adds the suffix where xdist's did not take, and does nothing where
    it did (older pytest, a fixed xdist).
    """
    if not getattr(config.option, "loadgroup", False):  # set on the workers of --dist loadgroup only
        return
    groups = {item: _groups(item) for item in items}
    _slow_first(items, groups)
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # pytest before 9.2: xdist's own suffix works
        return
    for item in items:
        suffix = "@" + "_".join(groups[item])
        if groups[item] and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            item._id = NodeId.parse(item.nodeid + suffix)


def _groups(item: pytest.Item) -> list[str]:
    """The ``xdist_group`` names of ``item``; a test without one that uses a module-scoped fixture gets its module's
    name, so that the module's tests run on one worker and build the fixture once (spread over both workers, and
    between other modules' tests on one, it was built again each time the module came back)."""
    marked = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                     for mark in item.iter_markers("xdist_group")})
    if marked:
        return marked
    fixtures = getattr(item, "_fixtureinfo", None)
    if fixtures is not None and any(definitions[-1].scope == "module"
                                    for definitions in fixtures.name2fixturedefs.values() if definitions):
        return [item.module.__name__]
    return []


def _slow_first(items: list[pytest.Item], groups: dict[pytest.Item, list[str]]) -> None:
    """Puts the groups (tests that share an expensive fixture) and the slow tests (a training run, a process, a
    converter) first, each group's tests together and in their order, so its module fixtures are built once.

    The scheduler hands out tests (a group as one unit) in this order as workers free up: the long ones start early
    and the short ones fill the gaps at the end, instead of one worker running a 40-second test while the other has
    nothing left to do (longest first packs two workers well).
    """
    items.sort(key=lambda item: not (groups[item] or item.get_closest_marker("slow")))
