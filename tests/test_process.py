"""Importing rsn2 changes nothing in the process; its entry points make their settings first."""

import rsn2
from tests.helpers import run_python


def test_importing_rsn2_sets_no_variable_and_loads_neither_torch_nor_numba():
    script = """
        import os, sys
        before = dict(os.environ)
        import rsn2
        print(dict(os.environ) == before, "torch" in sys.modules, "numba" in sys.modules)
        import numba, sklearn, torch  # what its dependencies set when they load (sklearn sets KMP_*) is theirs
        before = dict(os.environ)
        from rsn2 import MultitaskNetwork, TaskModel
        import rsn2.cli.main, rsn2.deploy.server
        print(dict(os.environ) == before, "torch" in sys.modules, MultitaskNetwork.__module__)
        """
    lines = run_python(script, OMP_WAIT_POLICY=None, NUMBA_CPU_FEATURES=None).splitlines()
    assert lines == ["True False False", "True True rsn2.network.model"]


def test_configure_process_makes_passive_threads_unless_the_user_chose():
    script = "import os; from rsn2.process import configure_process as c; c(); print(os.environ['OMP_WAIT_POLICY'])"
    assert run_python(script, OMP_WAIT_POLICY=None) == "PASSIVE"
    assert run_python(script, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


def test_the_command_configures_the_process_before_it_imports_torch():
    script = """
        import os, sys
        from rsn2.cli import entry
        print("torch" in sys.modules, os.environ.get("OMP_WAIT_POLICY"))
        try:
            entry.main(["--version"])
        except SystemExit:
            pass
        print(os.environ.get("OMP_WAIT_POLICY"))
        """
    assert run_python(script, OMP_WAIT_POLICY=None).splitlines() == [
        "False None",
        "rsn2 " + rsn2.__version__,
        "PASSIVE",
    ]


def test_every_public_name_loads_and_all_lists_them():
    assert set(rsn2.__all__) == {*rsn2._EXPORTS, "__version__"}
    for name in rsn2.__all__:
        assert getattr(rsn2, name) is not None
    assert "TaskModel" in dir(rsn2)
    try:
        rsn2.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no attribute 'no_such_name'" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
