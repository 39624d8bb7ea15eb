"""Transform step: TFT on Beam writes a TensorFlow Transform output the trainer and the server read."""

from __future__ import annotations


def test_transform_writes_a_tft_output(penguins_chain) -> None:
    import tensorflow_transform as tft

    config, paths, results = penguins_chain
    assert results["transform"]["label_classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    output = tft.TFTransformOutput(str(paths["transform"]))
    assert output.vocabulary_size_by_name("island") == 3
    spec = output.transformed_feature_spec()
    assert {"bill_length_mm_z", "bill_length_mm_missing", "body_mass_g_bucket", "island_id"} <= set(
        spec
    )
    assert "cross_island_x_sex" in spec


def test_tft_temp_dir_is_under_the_dataflow_temp_location() -> None:
    from pathlib import Path

    from apache_beam.options.pipeline_options import PipelineOptions

    from components.transform import _tft_temp_dir

    cloud = PipelineOptions(
        ["--runner=DataflowRunner", "--temp_location=gs://b/root/dataflow/temp"]
    )
    with _tft_temp_dir(cloud) as temp:
        assert temp.startswith("gs://b/root/dataflow/temp/tft-")
    with _tft_temp_dir(PipelineOptions(["--runner=FnApiRunner"])) as temp:
        assert Path(temp).is_dir()
    assert not Path(temp).exists()
