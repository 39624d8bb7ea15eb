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
