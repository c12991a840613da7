"""Registry: names, specs with parameters, wildcards, table variants and user plugins."""
import textwrap

import pytest

from benchmark.registry import (UnknownMethodError, expand_method_specs, list_methods, load_plugin,
                                parse_method_spec, registered_methods)


def test_builtin_methods_are_registered():
    names = list_methods()
    for name in ("LSH", "PCAH", "ITQ"):
        assert name in names
    assert list_methods("pca*") == ["PCAH"]


def test_spec_parsing_and_names():
    spec = parse_method_spec("ITQ(n_iterations=5)")
    assert spec.key == "ITQ(n_iterations=5)"
    assert spec.display == "ITQ (n_iterations=5)"
    assert spec.build(n_bits=8).n_iterations == 5
    assert parse_method_spec("itq").name == "ITQ"
    assert parse_method_spec("ITQ (n_iterations=5)").key == spec.key


def test_unknown_method_lists_what_exists():
    with pytest.raises(UnknownMethodError, match="Registered methods: .*ITQ"):
        expand_method_specs(["NoSuchHash"])
    with pytest.raises(UnknownMethodError, match="no parameter"):
        parse_method_spec("ITQ(bogus=1)")
    with pytest.raises(UnknownMethodError, match="key=value"):
        parse_method_spec("ITQ(5)")


def test_plugin_with_table_variants(tmp_path, monkeypatch):
    plugin = tmp_path / "my_hash_plugin.py"
    plugin.write_text(textwrap.dedent('''
        import numpy as np
        from benchmark.registry import register
        from methods.base import HashingMethod

        @register("MyHash")
        class MyHash(HashingMethod):
            table_variants = ({"scale": 1.0}, {"scale": 2.0})
            def __init__(self, n_bits=64, scale=1.0, random_state=0):
                super().__init__(n_bits=n_bits, random_state=random_state)
                self.scale = scale
            def _fit(self, X, y):
                self.w_ = self._rng().standard_normal((X.shape[1], self.n_bits)) * self.scale
            def _encode(self, X):
                return X @ self.w_
    '''))
    load_plugin(str(plugin))
    assert "MyHash" in registered_methods()
    keys = [s.key for s in expand_method_specs(["MyHash"])]
    assert keys == ["MyHash(scale=1.0)", "MyHash(scale=2.0)"]
    assert "MyHash(scale=2.0)" in [s.key for s in expand_method_specs(["all"])]


def test_missing_plugin_is_named():
    with pytest.raises(ModuleNotFoundError, match="no_such_plugin_module"):
        load_plugin("no_such_plugin_module")


def test_bare_words_in_a_spec_are_strings():
    from benchmark.registry import parse_method_spec

    bare = parse_method_spec("LTHNet(k=3,settings=paper)")
    quoted = parse_method_spec("LTHNet(k=3, settings='paper')")
    assert bare == quoted and bare.params == {"k": 3, "settings": "paper"}
    assert parse_method_spec("LTHNet(use_meta_embedding=False)").params == {"use_meta_embedding": False}
