"""The local runner's fix to kfp.local: task arguments reach the step exactly as given.

No `from __future__ import annotations` here: KFP reads the component's annotations."""


def test_task_arguments_reach_the_step_verbatim_even_with_python3_in_them(tmp_path) -> None:
    """kfp.local rewrites "python3" in task arguments; our runner keeps them as given (a data
    path such as /data/python3/rows.csv must arrive unchanged)."""
    from kfp import dsl, local

    from pipelines.local import _use_verbatim_task_arguments

    @dsl.component(install_kfp_package=False)
    def echo(text: str) -> str:
        return text

    @dsl.pipeline
    def echo_pipeline(text: str) -> str:
        return echo(text=text).output

    _use_verbatim_task_arguments()
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "python3-root"),
        raise_on_error=True,
    )
    text = '{"source": "/data/python3/rows.csv", "note": "python3 -m pip"}'
    assert echo_pipeline(text=text).output == text
