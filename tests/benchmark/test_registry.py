"""Registry: names, specs with parameters, wildcards, table variants and user plugins."""
import os
import textwrap

import pytest

from benchmark.specs import expand_method_specs, load_plugin, parse_method_spec
from methods import UnknownMethodError, list_methods, registered_methods


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
        from methods import register
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
    from benchmark.specs import parse_method_spec

    bare = parse_method_spec("LTHNet(k=3,settings=paper)")
    quoted = parse_method_spec("LTHNet(k=3, settings='paper')")
    assert bare == quoted and bare.params == {"k": 3, "settings": "paper"}
    assert parse_method_spec("LTHNet(use_meta_embedding=False)").params == {"use_meta_embedding": False}


def test_old_import_path_still_works_with_a_deprecation_warning(tmp_path):
    """``from benchmark.registry import register`` (the old path) registers a plugin and warns."""
    import subprocess
    import sys

    plugin = tmp_path / "old_style_plugin.py"
    plugin.write_text(textwrap.dedent('''
        from benchmark.registry import register
        from methods.base import HashingMethod

        @register("OldStyleHash")
        class OldStyleHash(HashingMethod):
            def _fit(self, X, y):
                pass
            def _encode(self, X):
                return X[:, :self.n_bits]
    '''))
    code = (f"import sys, warnings; warnings.simplefilter('always'); sys.path.insert(0, {str(tmp_path)!r});\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    import old_style_plugin\n"
            "from methods import registered_methods\n"
            "assert 'OldStyleHash' in registered_methods()\n"
            "print(sorted({w.category.__name__ for w in caught}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert "DeprecationWarning" in result.stdout


def test_a_taken_name_needs_override():
    from methods import register
    from methods.base import HashingMethod

    class Impostor(HashingMethod):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register("ITQ")(Impostor)
    original = registered_methods()["ITQ"]
    try:
        register("ITQ", override=True)(Impostor)
        assert registered_methods()["ITQ"] is Impostor
    finally:
        register("ITQ", override=True)(original)
