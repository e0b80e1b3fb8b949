"""Tests for bayesresnet.app.runspec: run specifications read from TOML, validated up front.

Unit tier only: every test parses text or loads small data sets; nothing is fitted.
"""

import datetime
import json
import re
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from bayesresnet import PriorSpec, ResNetSpec, bases
from bayesresnet.app.runspec import (
    DataSpec,
    NetworkSpec,
    ReportSpec,
    RunSpec,
    SpecError,
    from_dict,
    load_runspec,
    parse_runspec,
)
from bayesresnet.app.toml import describe, dumps, key_lines, literal, resolve_path
from bayesresnet.data import Dataset, save_npz
from bayesresnet.infer import METHODS, NUTSConfig

MODELS = Path(__file__).resolve().parent.parent / "models"
MODEL_FILES = sorted(MODELS.glob("*.toml"))


def _parse(text, **kwargs):
    """Parses dedented TOML text as if read from spec.toml."""
    kwargs.setdefault("path", "spec.toml")
    return parse_runspec(textwrap.dedent(text).lstrip("\n"), **kwargs)


SINE = """
[data]
problem = "sine"
"""


def _csv(path, rows=10, header="x1,x2,y"):
    rng = np.random.default_rng(0)
    lines = [header] + [",".join(f"{v:.4f}" for v in rng.normal(size=3)) for _ in range(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -------------------------------------------------------------------- shipped models


def test_models_folder_has_the_documented_specs():
    names = {p.stem for p in MODEL_FILES}
    assert {
        "default",
        "ishigami",
        "borehole",
        "friedman1",
        "sobol_g",
        "oscillator",
        "csv_template",
    } <= names


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_shipped_model_parses_loads_and_builds(path):
    spec = load_runspec(path)
    assert spec.name == path.stem
    assert spec.path == path
    dataset = spec.load_dataset()
    assert isinstance(dataset, Dataset)
    resnet = spec.resnet_spec(dataset)
    assert isinstance(resnet, ResNetSpec)
    assert (resnet.in_features, resnet.out_features) == (dataset.num_inputs, dataset.num_outputs)
    config = spec.method_config()
    assert isinstance(config, METHODS[spec.method][0])
    assert from_dict(spec.to_dict(), path=path) == spec
    # Every shipped spec opens with a comment saying what it shows and how long it runs.
    head = path.read_text(encoding="utf-8").splitlines()[0]
    assert head.startswith("#")
    assert "Time:" in path.read_text(encoding="utf-8").split("[data]")[0]


def test_default_model_is_the_documented_run():
    spec = load_runspec(MODELS / "default.toml")
    assert spec.data == DataSpec(problem="sine", num_train=100, num_test=500, noise=0.1)
    assert spec.network == NetworkSpec(width=8, num_layers=8, basis="cubic")
    assert spec.method == "nuts"
    assert spec.method_config() == NUTSConfig(
        num_warmup=500, num_samples=700, num_chains=4, max_tree_depth=9, target_accept_prob=0.95
    )


def test_oscillator_model_is_multi_output():
    spec = load_runspec(MODELS / "oscillator.toml")
    assert spec.resnet_spec(spec.load_dataset()).out_features == 3


def test_csv_template_reads_the_shipped_csv_files():
    spec = load_runspec(MODELS / "csv_template.toml")
    assert spec.data.train == MODELS / "data" / "train.csv"
    assert spec.data.test == MODELS / "data" / "test.csv"
    dataset = spec.load_dataset()
    assert (dataset.num_train, dataset.num_test) == (80, 40)
    assert dataset.input_names == ("x1", "x2") and dataset.output_names == ("y",)


# ------------------------------------------------------------------- the parsed spec


def test_defaults_of_every_section():
    spec = _parse(SINE)
    assert spec.name == "spec"
    assert spec.path == Path("spec.toml")
    assert spec.data == DataSpec(problem="sine")
    assert spec.network == NetworkSpec()
    assert spec.prior is None  # fit's default (PriorSpec(), or auto's choice)
    assert spec.fit_kwargs()["prior"] is None
    assert spec.to_dict()["prior"] == {} and from_dict(spec.to_dict(), path=spec.path) == spec
    assert (spec.method, spec.seed, spec.options) == ("nuts", 0, {})
    assert spec.report == ReportSpec(levels=(0.5, 0.9), num_probes=20)
    assert spec.network.resnet_spec(1, 1) == ResNetSpec(1, 1)


def test_name_without_a_path_defaults_to_run():
    assert parse_runspec(SINE).name == "run"
    assert parse_runspec('name = "mine"\n' + SINE).name == "mine"


def test_full_spec_becomes_library_objects():
    spec = _parse(
        """
        name = "full"
        [data]
        problem = "sobol_g"
        num_train = 50
        num_test = 20
        noise = 0
        design = "lhs"
        seed = 3
        [data.problem_options]
        dim = 4
        [network]
        width = 6
        num_layers = 5
        basis = "legendre"
        degree = 2
        activation = "relu"
        residual = false
        [prior]
        weight_scale = 2      # an int where a float is expected
        likelihood = "student_t"
        learn_basis_scale = true
        [inference]
        method = "svi"
        seed = 7
        guide = "laplace"
        num_steps = 100
        learning_rate = 0.01
        [report]
        levels = [0.5, 0.8, 0.95]
        num_probes = 5
        """
    )
    assert spec.data.noise == 0.0 and isinstance(spec.data.noise, float)
    assert spec.prior == PriorSpec(weight_scale=2.0, likelihood="student_t", learn_basis_scale=True)
    assert isinstance(spec.prior.weight_scale, float)
    assert spec.network.make_basis() == bases.Legendre(2)
    dataset = spec.load_dataset()
    assert (dataset.num_train, dataset.num_test, dataset.num_inputs) == (50, 20, 4)
    resnet = spec.resnet_spec(dataset)
    assert resnet == ResNetSpec(4, 1, 6, 5, bases.Legendre(2), "relu", False)
    assert spec.fit_kwargs() == {
        "method": "svi",
        "seed": 7,
        "prior": spec.prior,
        "guide": "laplace",
        "num_steps": 100,
        "learning_rate": 0.01,
    }
    assert spec.report.levels == (0.5, 0.8, 0.95)


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ('basis = "per_layer"', bases.PerLayer()),
        ('basis = "constant"', bases.Constant()),
        ('basis = "monomial"\ndegree = 0', bases.Monomial(0)),
        ('basis = "monomial"\ndegree = 5', bases.Monomial(5)),
        ('basis = "piecewise_linear"\nnum_knots = 4', bases.PiecewiseLinear(4)),
    ],
)
def test_every_basis_with_its_size_argument(network, expected):
    assert _parse(SINE + "[network]\n" + network).network.make_basis() == expected


def test_round_trip_through_to_dict_and_json(tmp_path):
    _csv(tmp_path / "d" / "train.csv")
    _csv(tmp_path / "d" / "test.csv")
    spec_path = tmp_path / "run.toml"
    spec_path.write_text(
        textwrap.dedent(
            """
            [data]
            train = "d/train.csv"
            test = "d/test.csv"
            outputs = "y"
            [network]
            basis = "piecewise_linear"
            num_knots = 3
            [inference]
            method = "ensemble"
            num_members = 2
            """
        ),
        encoding="utf-8",
    )
    spec = load_runspec(spec_path)
    d = spec.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert from_dict(d, path=spec_path) == spec
    assert from_dict(json.loads(json.dumps(d))) == spec.__class__(**{**vars(spec), "path": None})
    assert d["data"]["outputs"] == ["y"]
    assert "num_train" not in d["data"] and "degree" not in d["network"]


def test_round_trip_of_a_problem_spec():
    spec = _parse(SINE + "[data.problem_options]\n" + "[inference]\nnum_warmup = 10\n")
    assert from_dict(spec.to_dict(), path="spec.toml") == spec
    spec = _parse('[data]\nproblem = "oscillator"\nproblem_options = { times = [1.0, 2.0] }\n')
    assert spec.to_dict()["data"]["problem_options"] == {"times": [1.0, 2.0]}
    assert from_dict(spec.to_dict(), path="spec.toml") == spec


def test_paths_are_relative_to_the_spec_files_folder(tmp_path, monkeypatch):
    _csv(tmp_path / "project" / "data" / "train.csv", rows=20)
    spec_path = tmp_path / "project" / "specs" / "run.toml"
    spec_path.parent.mkdir()
    spec_path.write_text(
        '[data]\ntrain = "../data/train.csv"\noutputs = 1\ntest_fraction = 0.25\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    spec = load_runspec(spec_path)
    assert spec.data.train == tmp_path / "project" / "data" / "train.csv"
    assert spec.data.train.is_absolute()
    dataset = spec.load_dataset()
    assert (dataset.num_train, dataset.num_test) == (15, 5)
    # base_dir overrides the spec file's folder; without either, the working directory.
    text = spec_path.read_text(encoding="utf-8")
    assert parse_runspec(text, base_dir=tmp_path / "project" / "specs").data == spec.data
    monkeypatch.chdir(spec_path.parent)
    assert parse_runspec(text).data == spec.data


def test_npz_data_file(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(12, 2)), rng.normal(size=(12, 1))
    dataset = Dataset(x, y, x[:2], y[:2], ("a", "b"), ("y",), name="n")
    save_npz(dataset, tmp_path / "data.npz")
    spec = _parse('[data]\ntrain = "data.npz"\nseed = 2\n', path=tmp_path / "s.toml")
    assert spec.data.kind == "npz"
    assert spec.load_dataset().num_train == 12
    assert from_dict(spec.to_dict(), path=tmp_path / "s.toml") == spec


# ------------------------------------------------------------------------ line numbers


def test_key_lines_follow_tables_dotted_keys_and_skip_strings():
    lines = key_lines(
        textwrap.dedent(
            '''\
            name = "x"
            network.width = 4
            [data]
            problem = "sine"
            note = """
            width = 3
            """
            [data.problem_options]
            "dim" = 6
            [ inference ]  # comment
            method = "nuts"
            # seed = 1
            '''
        )
    )
    assert lines[("name",)] == 1
    assert lines[("network", "width")] == 2
    assert lines[("data",)] == 3
    assert lines[("data", "note")] == 5
    assert ("data", "width") not in lines and ("width",) not in lines
    assert lines[("data", "problem_options", "dim")] == 9
    assert lines[("inference", "method")] == 11
    assert ("inference", "seed") not in lines


def test_dotted_key_error_has_its_line():
    with pytest.raises(SpecError, match=r"spec\.toml, line 2: `width` in \[network\] must be"):
        _parse('name = "x"\nnetwork.width = "4"\n' + SINE)


def test_inline_table_error_points_at_the_table_line():
    with pytest.raises(SpecError, match=r"line 2: unknown key 'widht' in \[network\]"):
        _parse('name = "x"\nnetwork = { widht = 4 }\n' + SINE)


def test_spec_error_carries_file_line_and_key():
    with pytest.raises(SpecError) as info:
        _parse(SINE + "[network]\nwidth = 0\n")
    assert (info.value.file, info.value.line, info.value.key) == ("spec.toml", 4, "network.width")
    assert isinstance(info.value, ValueError)


def test_errors_without_lines_have_no_location():
    with pytest.raises(SpecError, match=r"^\[network\] `width` must be ≥ 1; got 0\.$"):
        from_dict({"data": {"problem": "sine"}, "network": {"width": 0}})


# ------------------------------------------------------------------------ file errors


def test_missing_spec_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`path`: no run specification file .*nope\.toml"):
        load_runspec(tmp_path / "nope.toml")


def test_spec_file_not_utf8(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b"[data]\nproblem = '\xff'\n")
    with pytest.raises(SpecError, match=r"bad\.toml: the file is not UTF-8 text"):
        load_runspec(path)


def test_text_must_be_a_string():
    with pytest.raises(TypeError, match=r"`text` must be a str of TOML; got bytes"):
        parse_runspec(b"[data]")


def test_dict_must_be_a_mapping():
    with pytest.raises(TypeError, match=r"`d` must be a mapping of sections; got list"):
        from_dict([("data", {})])


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[data]\nproblem = sine\n", r"spec\.toml, line 2: invalid TOML: Invalid value .*quotes"),
        ('[data\nproblem = "sine"\n', r"spec\.toml, line 1: invalid TOML: Expected '\]'"),
        ('[data]\nproblem = "sine"\nproblem = "sine"\n', r"line 3: invalid TOML"),
    ],
)
def test_toml_syntax_errors_give_the_line(text, pattern):
    with pytest.raises(SpecError, match=pattern):
        parse_runspec(text, path="spec.toml")


def test_toml_syntax_error_from_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[data]\n\nproblem = "sine\n', encoding="utf-8")
    with pytest.raises(SpecError, match=r"s\.toml, line 3: invalid TOML") as info:
        load_runspec(path)
    assert info.value.line == 3


# ------------------------------------------------------------------ unknown keys


def test_unknown_key_names_section_suggestion_allowed_keys_and_line():
    text = """
    [data]
    problem = "sine"

    [network]
    width = 8
    num_layer = 10
    """
    with pytest.raises(
        SpecError,
        match=r"spec\.toml, line 6: unknown key 'num_layer' in \[network\]\. "
        r"Did you mean 'num_layers'\? Allowed keys in \[network\]: activation, auto, basis, "
        r"degree, num_knots, num_layers, residual, scheme, width\.",
    ):
        _parse(text)


def test_unknown_top_level_key_in_the_wrong_place():
    with pytest.raises(
        SpecError, match=r"line 3: unknown key 'method' at the top level\. 'method' belongs in "
    ):
        _parse('name = "a"\n\nmethod = "svi"\n' + SINE)


def test_first_unknown_key_by_line_is_reported():
    with pytest.raises(SpecError, match=r"line 3: unknown key 'zzz' in \[data\]"):
        _parse('[data]\nproblem = "sine"\nzzz = 1\naaa = 2\n')


@pytest.mark.parametrize(
    ("section", "key", "pattern"),
    [
        (
            "prior",
            "weight_scal = 1.0",
            r"line 4: unknown key 'weight_scal' in \[prior\]\. "
            r"Did you mean 'weight_scale'\?",
        ),
        (
            "report",
            "level = [0.5]",
            r"line 4: unknown key 'level' in \[report\]\. "
            r"Did you mean 'levels'\?",
        ),
        (
            "data",
            "num_trian = 5",
            r"line 2: unknown key 'num_trian' in \[data\]\. "
            r"Did you mean 'num_train'\?",
        ),
        (
            "inference",
            "num_sample = 5",
            r"line 4: unknown key 'num_sample' in \[inference\] "
            r"\(method = \"nuts\"\)\. Did you mean 'num_samples'\?",
        ),
    ],
)
def test_unknown_key_in_each_section(section, key, pattern):
    if section == "data":
        text = f'[data]\n{key}\nproblem = "sine"\n'
    else:
        text = SINE.lstrip("\n") + f"[{section}]\n{key}\n"
    with pytest.raises(SpecError, match=pattern):
        parse_runspec(text)


def test_option_of_another_method_names_that_method():
    with pytest.raises(
        SpecError,
        match=r"line 5: unknown key 'num_warmup' in \[inference\]: it is an option of method "
        r"'nuts' and 'mclmc', not of method = \"svi\"",
    ):
        _parse(SINE + '[inference]\nmethod = "svi"\nnum_warmup = 300\n')


def test_auto_method_takes_no_options():
    spec = _parse(SINE + '[inference]\nmethod = "auto"\nseed = 3\n')
    assert spec.fit_kwargs()["method"] == "auto" and spec.seed == 3
    assert spec.method_config() is None
    with pytest.raises(
        SpecError,
        match=r"line 5: unknown key 'num_warmup' in \[inference\]: it is an option of method "
        r"'nuts' and 'mclmc', not of method = \"auto\"",
    ):
        _parse(SINE + '[inference]\nmethod = "auto"\nnum_warmup = 300\n')


def test_unknown_problem_option():
    with pytest.raises(
        SpecError,
        match=r"line 4: unknown key 'dims' in \[data\.problem_options\] \(the options of "
        r"problem 'sobol_g'\)\. Did you mean 'dim'\? Allowed keys in "
        r"\[data\.problem_options\]: a, dim\.",
    ):
        _parse('[data]\nproblem = "sobol_g"\n[data.problem_options]\ndims = 6\n')


def test_problem_without_options_takes_none():
    with pytest.raises(SpecError, match=r"line 3: unknown key 'dim' .*Allowed keys .*: none\."):
        _parse('[data]\nproblem = "sine"\nproblem_options = { dim = 2 }\n')


# ------------------------------------------------------------------------ wrong types


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ('width = "8"', r'must be an integer; got the string "8"\. Remove the quotes: width = 8\.'),
        ("width = 8.5", r"must be an integer; got the float 8\.5\. Use a whole number\."),
        (
            "width = 8.0",
            r"must be an integer; got the float 8\.0\. "
            r"Write it without a decimal point: width = 8\.",
        ),
        ("width = true", r"must be an integer; got the boolean true\.$"),
        ("residual = 1", r"must be true or false; got the integer 1\.$"),
        (
            'residual = "True"',
            r"must be true or false; got the string \"True\"\. "
            r"Write it without quotes, in lower case: residual = true\.",
        ),
        ("basis = 3", r'must be a string; got the integer 3\. Quote it: basis = "3"\.'),
        ("activation = [1]", r"must be a string; got the array \[1\]\.$"),
    ],
)
def test_wrong_type_names_key_expected_given_and_line(line, pattern):
    with pytest.raises(SpecError, match=r"spec\.toml, line 4: `\w+` in \[network\] " + pattern):
        _parse(SINE + "[network]\n" + line + "\n")


def test_wrong_type_of_prior_method_option_report_and_data():
    with pytest.raises(SpecError, match=r"line 4: `bias_scale` in \[prior\] must be a number; "):
        _parse(SINE + '[prior]\nbias_scale = "1"\n')
    with pytest.raises(
        SpecError,
        match=r"line 5: `learning_rate` in \[inference\] must be a number; got the string "
        r'"0\.1"\. Remove the quotes: learning_rate = 0\.1\.',
    ):
        _parse(SINE + '[inference]\nmethod = "svi"\nlearning_rate = "0.1"\n')
    with pytest.raises(SpecError, match=r"line 4: `num_chains` in \[inference\] must be an int"):
        _parse(SINE + "[inference]\nnum_chains = true\n")
    with pytest.raises(
        SpecError, match=r"line 4: `levels` in \[report\] must be a list of numbers"
    ):
        _parse(SINE + '[report]\nlevels = ["0.5"]\n')
    with pytest.raises(SpecError, match=r"line 3: `noise` in \[data\] must be a number; got the"):
        _parse(SINE + 'noise = "high"\n')
    with pytest.raises(SpecError, match=r"line 3: `problem_options` in \[data\] must be a table"):
        _parse(SINE + "problem_options = 6\n")


def test_int_accepted_where_a_float_is_expected():
    spec = _parse(
        SINE + "noise = 1\n[inference]\ntarget_accept_prob = 1e-1\ninit_learning_rate = 1\n"
    )
    assert spec.data.noise == 1.0
    assert spec.options["init_learning_rate"] == 1.0
    assert isinstance(spec.options["init_learning_rate"], float)


def test_optional_int_option_accepts_an_int():
    spec = _parse(SINE + '[inference]\nmethod = "svi"\nrank = 3\n')
    assert spec.method_config().rank == 3


def test_section_must_be_a_table():
    with pytest.raises(
        SpecError,
        match=r"line 1: \[network\] must be a table of settings; got "
        r"the integer 5",
    ):
        _parse("network = 5\n" + SINE)


@pytest.mark.parametrize(
    "name", ['""', '"a/b"', "3", '"."', '".."', '"/abs"', '".hidden"', '"a\\tb"']
)
def test_invalid_name(name):
    with pytest.raises(SpecError, match=r"line 1: `name` must be a non-empty string without"):
        _parse(f"name = {name}\n" + SINE)


# ------------------------------------------------------------------- impossible values


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("[network]\nwidth = 0", r"line 4: \[network\] `width` must be ≥ 1; got 0\."),
        ("[network]\nnum_layers = -2", r"line 4: \[network\] `num_layers` must be ≥ 1; got -2"),
        (
            '[network]\nbasis = "cubc"',
            r"line 4: \[network\] unknown basis \"cubc\"; allowed: .*Did you mean 'cubic'\?",
        ),
        (
            '[network]\nbasis = "cubic"\ndegree = 3',
            r"line 5: \[network\] `degree` applies only to the bases \['monomial', 'legendre'\], "
            r'not to basis = "cubic"; remove it',
        ),
        (
            '[network]\nbasis = "monomial"\nnum_knots = 3',
            r"line 5: \[network\] `num_knots` applies only to the bases \['piecewise_linear'\]",
        ),
        (
            '[network]\nbasis = "legendre"',
            r'line 4: \[network\] basis = "legendre" needs `degree`; add e\.g\. `degree = 3`',
        ),
        (
            '[network]\nbasis = "piecewise_linear"\nnum_knots = 1',
            r"line 5: \[network\] `num_knots` must be ≥ 2; got 1\.",
        ),
        (
            '[network]\nactivation = "sigmoid"',
            r"line 4: \[network\] `activation` must be one of \['gelu', 'identity', 'relu'",
        ),
        (
            '[inference]\nmethod = "hmc"',
            r"line 4: \[inference\] `method` must be 'auto' or one of "
            r"\['ensemble', 'mclmc', 'nuts', 'svi'\]; got "
            r'the string "hmc"',
        ),
        ("[inference]\nseed = -1", r"line 4: \[inference\] `seed` must be ≥ 0; got -1"),
        ("[inference]\nnum_chains = 0", r"line 4: \[inference\] `num_chains` must be ≥ 1; got 0"),
        (
            '[inference]\nmethod = "svi"\nguide = "flow"',
            r"line 5: \[inference\] `guide` must be one of .*got 'flow'",
        ),
        (
            "[prior]\nlikelihood = 'cauchy'",
            r"line 4: \[prior\] `likelihood` must be one of \['normal', 'student_t'\]",
        ),
        ("[prior]\nweight_scale = 0", r"line 4: \[prior\] `weight_scale` must be a finite number"),
        (
            "[report]\nlevels = [0.5, 1.5]",
            r"line 4: \[report\] `levels\[1\]` must be a finite number in \(0, 1\); got 1\.5",
        ),
        ("[report]\nlevels = []", r"line 4: `levels` in \[report\] must be a non-empty list"),
        ("[report]\nlevels = [0.5, 0.5]", r"line 4: .*distinct levels; got \[0\.5, 0\.5\]"),
        ("[report]\nnum_probes = 0", r"line 4: \[report\] `num_probes` must be ≥ 1; got 0"),
    ],
)
def test_impossible_values_name_key_line_and_what_is_allowed(text, pattern):
    with pytest.raises(SpecError, match=r"^spec\.toml, " + pattern):
        _parse(SINE + text + "\n")


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            '[data]\nproblem = "sin"',
            r"line 2: \[data\] unknown problem \"sin\"; available problems: \['borehole', .*"
            r"Did you mean 'sine'\?",
        ),
        ('[data]\nproblem = "sine"\nnum_train = 2', r"line 3: \[data\] `num_train` must be ≥ 3"),
        ('[data]\nproblem = "sine"\nnum_test = -1', r"line 3: \[data\] `num_test` must be ≥ 0"),
        ('[data]\nproblem = "sine"\nnoise = -0.1', r"line 3: \[data\] `noise` must be a finite"),
        ('[data]\nproblem = "sine"\nseed = -3', r"line 3: \[data\] `seed` must be ≥ 0; got -3"),
        (
            '[data]\nproblem = "sine"\ndesign = "sobol"',
            r"line 3: \[data\] `design` must be one of \['uniform', 'lhs'\]; got \"sobol\"",
        ),
        (
            '[data]\nproblem = "sobol_g"\n[data.problem_options]\ndim = 0',
            r"line 4: \[data\.problem_options\] `dim` must be ≥ 1; got 0\.",
        ),
        (
            '[data]\nproblem = "sine"\ntrain = "x.csv"',
            r"line 3: \[data\] gives both `problem` and `train`; use one data source",
        ),
        (
            "[data]\nseed = 1",
            r"line 1: \[data\] needs a data source: `problem = \"sine\"` .* or `train = ",
        ),
        (
            '[data]\nproblem = "sine"\noutputs = ["y"]',
            r"line 3: `outputs` in \[data\] applies only to a data file \(`train`\), but \[data\] "
            r'uses problem = "sine"; remove `outputs`\.',
        ),
    ],
)
def test_impossible_data_values(text, pattern):
    with pytest.raises(SpecError, match=r"^spec\.toml, " + pattern):
        _parse(text + "\n")


def test_missing_data_section():
    with pytest.raises(SpecError, match=r"^spec\.toml: the spec has no \[data\] section; add one"):
        _parse("[network]\nwidth = 3\n")


def test_missing_data_section_in_an_empty_spec_has_no_line():
    with pytest.raises(SpecError, match=r"^spec\.toml: the spec has no \[data\] section"):
        _parse("")


# ------------------------------------------------------------------------ data files


@pytest.fixture
def project(tmp_path):
    """A spec folder with data/train.csv (x1, x2, y) and data/test.csv."""
    _csv(tmp_path / "data" / "train.csv", rows=12)
    _csv(tmp_path / "data" / "test.csv", rows=4)
    return tmp_path


def _in(project, body):
    return _parse(body, path=project / "spec.toml")


def test_csv_with_test_file(project):
    spec = _in(project, '[data]\ntrain = "data/train.csv"\ntest = "data/test.csv"\noutputs = ["y"]')
    dataset = spec.load_dataset()
    assert (dataset.num_train, dataset.num_test) == (12, 4)


def test_missing_csv_names_key_line_and_the_folder(project, monkeypatch):
    monkeypatch.chdir(project / "data")  # the working directory must not matter
    expected = (
        f'spec.toml, line 2: [data] `train`: no such file "trian.csv" (looked for '
        f"{project / 'trian.csv'}: relative paths are taken from the spec file's folder, "
        f"{project}). Check the path."
    )
    with pytest.raises(SpecError, match=re.escape(expected)):
        _in(project, '[data]\ntrain = "trian.csv"\noutputs = 1')


def test_missing_test_csv(project):
    with pytest.raises(SpecError, match=r"line 3: \[data\] `test`: no such file \"data/t\.csv\""):
        _in(project, '[data]\ntrain = "data/train.csv"\ntest = "data/t.csv"\noutputs = 1')


def test_missing_absolute_path(project):
    missing = project / "none.csv"
    with pytest.raises(
        SpecError,
        match=r"line 2: \[data\] `train`: no such file \".*none\.csv\"\. Check the path\.$",
    ):
        _in(project, f'[data]\ntrain = "{missing}"\noutputs = 1')


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        (
            'train = "data/train.txt"\noutputs = 1',
            r"line 2: \[data\] `train` must be a \.csv or \.npz file; got \"data/train\.txt\"",
        ),
        (
            'train = "data/train.csv"',
            r"line 2: \[data\] reads a CSV file but does not say which columns are outputs; "
            r'add `outputs = \["y"\]`',
        ),
        (
            'train = "data/train.csv"\noutputs = ["z"]',
            r"line 3: \[data\] `outputs` must name columns of .*train\.csv; got \['z'\], but "
            r"the header has \['x1', 'x2', 'y'\]",
        ),
        (
            'train = "data/train.csv"\noutputs = []',
            r"line 3: \[data\] `outputs` must name columns",
        ),
        (
            'train = "data/train.csv"\noutputs = ["y", "y"]',
            r"line 3: \[data\] `outputs` must list distinct columns and leave at least one input",
        ),
        (
            'train = "data/train.csv"\noutputs = ["x1", "x2", "y"]',
            r"line 3: \[data\] `outputs` must list distinct columns and leave at least one input",
        ),
        (
            'train = "data/train.csv"\noutputs = 3',
            r"line 3: \[data\] `outputs` = 3 trailing columns is invalid for .* which has 3 "
            r"columns \['x1', 'x2', 'y'\]; use 1 to 2",
        ),
        (
            'train = "data/train.csv"\noutputs = 1.5',
            r"line 3: `outputs` in \[data\] must be a list of column names or an integer count",
        ),
        (
            'train = "data/train.csv"\noutputs = 1\ntest = "data/test.csv"\ntest_fraction = 0.1',
            r"line 5: \[data\] gives both a `test` file and `test_fraction`",
        ),
        (
            'train = "data/train.csv"\noutputs = 1\ntest = "data/test.npz"',
            r"line 4: \[data\] `test` must be a \.csv file like `train`",
        ),
        (
            'train = "data/train.csv"\noutputs = 1\ntest_fraction = 1',
            r"line 4: \[data\] `test_fraction` must be in \[0, 1\); got 1\.0",
        ),
        (
            'train = "data/train.csv"\noutputs = 1\ntest_fraction = -0.5',
            r"line 4: \[data\] `test_fraction` must be in \[0, 1\); got -0\.5",
        ),
        (
            'train = "data/train.csv"\noutputs = 1\nnum_train = 5',
            r"line 4: `num_train` in \[data\] applies only to a built-in `problem`, but \[data\] "
            r'reads the file train = "data/train\.csv"; remove `num_train`\.',
        ),
    ],
)
def test_data_file_errors(project, body, pattern):
    with pytest.raises(SpecError, match=r"spec\.toml, " + pattern):
        _in(project, "[data]\n" + body)


def test_npz_rejects_csv_only_keys(project):
    (project / "d.npz").write_bytes(b"")
    with pytest.raises(SpecError, match=r"line 3: `outputs` in \[data\] applies only to CSV"):
        _in(project, '[data]\ntrain = "d.npz"\noutputs = 1')


def test_unreadable_csv_header_is_left_to_the_loader(project):
    (project / "data" / "bad.csv").write_bytes(b"\xff\xfe\n")
    spec = _in(project, '[data]\ntrain = "data/bad.csv"\noutputs = 1')
    with pytest.raises(ValueError, match=r"is not a UTF-8 text"):
        spec.load_dataset()


def test_int_outputs_count_and_single_name(project):
    spec = _in(project, '[data]\ntrain = "data/train.csv"\noutputs = 2')
    assert spec.load_dataset().output_names == ("x2", "y")
    spec = _in(project, '[data]\ntrain = "data/train.csv"\noutputs = "x1"')
    assert spec.data.outputs == ("x1",)
    assert spec.load_dataset().input_names == ("x2", "y")


def test_runspec_is_frozen():
    spec = _parse(SINE)
    with pytest.raises(AttributeError):
        spec.method = "svi"
    assert isinstance(spec, RunSpec)


def test_empty_csv_is_left_to_the_loader(project):
    (project / "data" / "empty.csv").write_text("\n\n", encoding="utf-8")
    spec = _in(project, '[data]\ntrain = "data/empty.csv"\noutputs = 1')
    with pytest.raises(ValueError, match=r"empty\.csv is empty"):
        spec.load_dataset()


def test_section_given_only_as_dotted_keys_is_located_at_its_first_key():
    with pytest.raises(SpecError, match=r"^spec\.toml, line 2: \[data\] needs a data source"):
        _parse('name = "x"\ndata.seed = 1\ndata.num_train = 5\n')


def test_table_where_a_value_is_expected():
    with pytest.raises(
        SpecError, match=r"line 4: `width` in \[network\] must be an integer; got a "
    ):
        _parse(SINE + "[network]\nwidth = { a = 1 }\n")


def test_scheme_round_trips_and_heun_with_per_layer_is_refused():
    spec = _parse(SINE + '[network]\nscheme = "heun"\n')
    assert spec.network.scheme == "heun"
    assert spec.resnet_spec(spec.load_dataset()).scheme == "heun"
    assert from_dict(spec.to_dict(), path="spec.toml") == spec
    with pytest.raises(SpecError, match='line 5.*`scheme` "heun" needs W'):
        _parse(SINE + '[network]\nbasis = "per_layer"\nscheme = "heun"\n')


# ----------------------------------------------------------------- bayesresnet.app.toml


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        0,
        -7,
        0.1,
        1e-300,
        -2.5e20,
        float("inf"),
        float("-inf"),
        "cubic",
        'a "quoted" \\ name\n',
        [1, 2.5, "x", [True]],
        [],
        {"dim": 6, "a": [1.0, 2.0], "nested": {"b": "c"}, "dotted.key": 1},
        datetime.date(2024, 5, 17),
        datetime.datetime(2024, 5, 17, 7, 32, 0, tzinfo=datetime.UTC),
    ],
)
def test_literal_is_read_back_by_tomllib_as_the_same_value(value):
    assert tomllib.loads(f"x = {literal(value)}")["x"] == value


def test_literal_writes_nan_and_refuses_what_toml_cannot_hold():
    assert literal(float("nan")) == "nan"
    assert np.isnan(tomllib.loads(f"x = {literal(float('nan'))}")["x"])
    with pytest.raises(TypeError, match="cannot write NoneType None as TOML"):
        literal(None)
    with pytest.raises(TypeError, match="cannot write set"):
        literal({1, 2})


def test_describe_names_the_toml_type_and_writes_the_value():
    assert describe("8") == 'the string "8"'
    assert describe(3) == "the integer 3"
    assert describe(True) == "the boolean true"
    assert describe([1, "a"]) == 'the array [1, "a"]'
    assert describe({"a": 1}) == "a table"
    assert describe(datetime.date(2024, 1, 2)) == "the date/time 2024-01-02"


def test_dumps_writes_a_resolved_spec_that_reads_back_the_same():
    spec = _parse(SINE + '[inference]\nmethod = "svi"\nnum_steps = 10\n')
    text = dumps(spec.to_dict())
    assert tomllib.loads(text) == spec.to_dict()
    assert parse_runspec(text).to_dict() == spec.to_dict()
    # None values are left out; sub-tables follow their parent's keys.
    assert dumps({"a": None, "t": {"x": 1, "sub": {"y": 2}, "z": None}}) == (
        "\n[t]\nx = 1\n\n[t.sub]\ny = 2\n".lstrip("\n")
    )


def test_resolve_path_takes_relative_paths_from_the_base_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_path("data/x.csv", tmp_path) == tmp_path / "data" / "x.csv"
    assert resolve_path("../x.csv", tmp_path / "a") == tmp_path / "x.csv"
    assert resolve_path("/abs/x.csv", tmp_path) == Path("/abs/x.csv")
    assert resolve_path("~/x.csv", tmp_path) == tmp_path / "home" / "x.csv"


# ------------------------------------------------------------------------- transforms


BOREHOLE = """
[data]
problem = "borehole"
[data.transforms]
r = "log"
flow = "log"
"""


def test_transforms_table_reaches_fit_kwargs_and_round_trips():
    spec = _parse(BOREHOLE)
    assert spec.data.transforms == {"r": "log", "flow": "log"}
    assert spec.fit_kwargs()["transforms"] == {"r": "log", "flow": "log"}
    again = from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again.data.transforms == spec.data.transforms


def test_no_transforms_leave_fit_kwargs_and_to_dict_unchanged():
    spec = _parse(SINE)
    assert "transforms" not in spec.fit_kwargs()
    assert "transforms" not in spec.to_dict()["data"]


def test_unknown_transform_is_refused_at_its_line():
    with pytest.raises(SpecError) as info:
        _parse(BOREHOLE.replace('flow = "log"', 'flow = "lg"'))
    assert (info.value.line, info.value.key) == (5, "data.transforms.flow")
    assert "transforms are ['log']. Did you mean 'log'?" in str(info.value)


def test_transform_of_an_unknown_column_is_refused_at_its_line():
    with pytest.raises(SpecError) as info:
        _parse(BOREHOLE.replace('r = "log"', 'rr = "log"'))
    assert (info.value.line, info.value.key) == (4, "data.transforms.rr")
    assert re.search(
        r"`transforms` names 'rr', not a column of the data: the inputs are", str(info.value)
    )


def test_transform_of_a_csv_column_is_checked_against_its_header(tmp_path):
    _csv(tmp_path / "d.csv")
    text = 'name = "c"\n[data]\ntrain = "d.csv"\noutputs = ["y"]\n[data.transforms]\nx11 = "log"\n'
    with pytest.raises(SpecError, match=r"line 6: .*names 'x11', not a column.*Did you mean 'x1'"):
        parse_runspec(text, path=tmp_path / "spec.toml")
    ok = parse_runspec(text.replace("x11", "x2"), path=tmp_path / "spec.toml")
    assert ok.data.transforms == {"x2": "log"}


def test_transforms_must_be_a_table():
    with pytest.raises(SpecError, match=r"line 3: `transforms` in \[data\] must be a table"):
        _parse(SINE + 'transforms = "log"\n')


def test_lbfgs_polish_settings_are_spec_keys():
    base = '[data]\nproblem = "sine"\n\n[inference]\n'
    ensemble = parse_runspec(base + 'method = "ensemble"\npolish = "lbfgs"\npolish_steps = 200\n')
    assert ensemble.method_config().polish == "lbfgs"
    assert ensemble.method_config().polish_steps == 200
    for method in ("nuts", "mclmc", "svi"):
        spec = parse_runspec(base + f'method = "{method}"\ninit_polish = "lbfgs"\n')
        assert spec.method_config().init_polish == "lbfgs"
    with pytest.raises(SpecError, match=r"line 6: \[inference\] `polish` must be one of .*lbfgs"):
        parse_runspec(base + 'method = "ensemble"\npolish = "bfgs"\n')
