"""The application wing: TOML specs, run folders, the command line, studies and their report.

It builds on the library (``bayesresnet``) and the library never imports it:

==================  ==================================================================
``toml``            TOML read with the line of every key, :class:`SpecError`, writing
``spec``            the run specification as Python objects (:class:`RunSpec`)
``runspec``         a run spec read from TOML and validated before any work
``run_folder``      the run folder: fit, save, load, analyse (``bayesresnet fit``)
``results``         a study's results table: its columns, CSV and Parquet
``study``           studies: a grid of runs, in parallel (local or Ray), resumable
``study_report``    a study's HTML report
``cli``             the ``bayesresnet`` command
``compile_cache``   compiled programs kept on disk between runs (on for the command)
==================  ==================================================================
"""

_MODULES = (
    "cli",
    "compile_cache",
    "results",
    "run_folder",
    "runspec",
    "spec",
    "study",
    "study_report",
    "toml",
)


def __getattr__(name):
    # The submodules load on first use (``bayesresnet.app.study``), as the library's do.
    if name in _MODULES:
        import importlib

        return importlib.import_module(f"bayesresnet.app.{name}")
    raise AttributeError(f"module 'bayesresnet.app' has no attribute {name!r}")


__all__: list[str] = []
