"""hw.config: every parameter's valid and invalid values, TOML in and out, the embedded default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from npugen.hw.config import (AttentionConfig, ConfigError, GemmConfig, SoftmaxConfig, default_toml,
                       derived_acc_width, load_config, parse_toml)

ROOT = Path(__file__).resolve().parent.parent

RANGE_1_64 = "an integer from 1 to 64"
NAME_RULE = ("a lower-case identifier matching ^[a-z_][a-z0-9_]*$, at most 64 characters, "
             "not a Verilog keyword")


# -- defaults -----------------------------------------------------------------------------------

def test_defaults():
    cfg = GemmConfig()
    assert (cfg.name, cfg.rows, cfg.cols, cfg.dataflow, cfg.k_max) == ("npu", 16, 16, "ws", 4096)
    assert cfg.acc_width is None and cfg.acc_bits == 32 and cfg.lane_bits == 32
    assert (cfg.rounding, cfg.acc_depth, cfg.res_depth, cfg.clock_mhz) == ("single", 512, 256,
                                                                           280.0)
    assert cfg.requant_lanes is None and cfg.rq_lanes == 4


def test_embedded_default_equals_dataclass_default():
    assert load_config() == GemmConfig()
    assert load_config(None) == parse_toml(default_toml())


def test_configs_default_is_a_copy_of_the_embedded_default():
    assert (ROOT / "configs" / "default.toml").read_bytes() == \
        (ROOT / "hw" / "default.toml").read_bytes()
    assert (ROOT / "hw" / "default.toml").read_text(encoding="utf-8") == default_toml()


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_example_configs_load(path):
    cfg = load_config(path)
    assert parse_toml(cfg.to_toml()) == cfg


def test_small_os_example():
    cfg = load_config(ROOT / "configs" / "small_os.toml")
    assert (cfg.rows, cfg.cols, cfg.dataflow) == (4, 4, "os")


# -- valid values -------------------------------------------------------------------------------

VALID = [
    ("name", "npu"), ("name", "_x"), ("name", "a1_b2"), ("name", "a" * 64), ("name", "npu_small"),
    ("rows", 1), ("rows", 64), ("rows", 7),
    ("cols", 1), ("cols", 64), ("cols", 3),
    ("dataflow", "ws"), ("dataflow", "os"),
    ("k_max", 1), ("k_max", 4096), ("k_max", (1 << 24) - 1),
    ("acc_width", None), ("acc_width", 32), ("acc_width", 48), ("acc_width", 64),
    ("rounding", "single"), ("rounding", "double"),
    ("acc_depth", 2), ("acc_depth", 16), ("acc_depth", 512), ("acc_depth", 65536),
    ("res_depth", 16), ("res_depth", 17), ("res_depth", 4096),
    ("clock_mhz", 0.001), ("clock_mhz", 100), ("clock_mhz", 2000.0),
]


@pytest.mark.parametrize("key,value", VALID, ids=lambda v: repr(v))
def test_valid_value(key, value):
    cfg = GemmConfig(**{key: value})
    assert getattr(cfg, key) == value
    # and through TOML
    assert parse_toml(cfg.to_toml()) == cfg


@pytest.mark.parametrize("rows,lo", [(1, 4), (4, 4), (5, 5), (64, 64)])
def test_res_depth_holds_an_output_tile(rows, lo):
    assert GemmConfig(rows=rows, res_depth=lo).res_depth == lo
    with pytest.raises(ConfigError) as info:
        GemmConfig(rows=rows, res_depth=lo - 1)
    assert str(info.value) == \
        f"res_depth: {lo - 1} is not allowed (an integer from {lo} (at least rows) to 4096)"


def test_clock_integer_becomes_float():
    cfg = GemmConfig(clock_mhz=100)
    assert cfg.clock_mhz == 100.0 and isinstance(cfg.clock_mhz, float)
    assert parse_toml("clock_mhz = 300").clock_mhz == 300.0


# -- invalid values, with the exact message -----------------------------------------------------

INVALID = [
    ("name", "", NAME_RULE, '""'),
    ("name", "Npu", NAME_RULE, '"Npu"'),
    ("name", "1npu", NAME_RULE, '"1npu"'),
    ("name", "npu-x", NAME_RULE, '"npu-x"'),
    ("name", "a" * 65, NAME_RULE, '"' + "a" * 65 + '"'),
    ("name", "module", NAME_RULE, '"module"'),
    ("name", "wire", NAME_RULE, '"wire"'),
    ("name", 3, NAME_RULE, "3"),
    ("rows", 0, RANGE_1_64, "0"),
    ("rows", 65, RANGE_1_64, "65"),
    ("rows", -1, RANGE_1_64, "-1"),
    ("rows", True, RANGE_1_64, "true"),
    ("rows", 4.0, RANGE_1_64, "4.0"),
    ("rows", "4", RANGE_1_64, '"4"'),
    ("cols", 0, RANGE_1_64, "0"),
    ("cols", 65, RANGE_1_64, "65"),
    ("cols", False, RANGE_1_64, "false"),
    ("cols", 2.5, RANGE_1_64, "2.5"),
    ("dataflow", "is", '"ws" or "os"', '"is"'),
    ("dataflow", "WS", '"ws" or "os"', '"WS"'),
    ("dataflow", 1, '"ws" or "os"', "1"),
    ("k_max", 0, "an integer from 1 to 16777215", "0"),
    ("k_max", 1 << 24, "an integer from 1 to 16777215", "16777216"),
    ("k_max", 4096.0, "an integer from 1 to 16777215", "4096.0"),
    ("k_max", True, "an integer from 1 to 16777215", "true"),
    ("acc_width", 31, "an integer from 32 to 64 for k_max = 4096", "31"),
    ("acc_width", 65, "an integer from 32 to 64 for k_max = 4096", "65"),
    ("acc_width", 32.0, "an integer from 32 to 64 for k_max = 4096", "32.0"),
    ("acc_width", True, "an integer from 32 to 64 for k_max = 4096", "true"),
    ("rounding", "round", '"single" or "double"', '"round"'),
    ("rounding", 2, '"single" or "double"', "2"),
    ("acc_depth", 1, "a power of two from 2 to 65536", "1"),
    ("acc_depth", 100, "a power of two from 2 to 65536", "100"),
    ("acc_depth", 131072, "a power of two from 2 to 65536", "131072"),
    ("acc_depth", 512.0, "a power of two from 2 to 65536", "512.0"),
    ("requant_lanes", 0, "an integer from 1 to cols (16)", "0"),
    ("requant_lanes", 17, "an integer from 1 to cols (16)", "17"),
    ("requant_lanes", 2.0, "an integer from 1 to cols (16)", "2.0"),
    ("requant_lanes", True, "an integer from 1 to cols (16)", "true"),
    ("requant_pp_bits", 12, "8 or 16", "12"),
    ("requant_pp_bits", 16.0, "8 or 16", "16.0"),
    ("requant_pp_bits", True, "8 or 16", "true"),
    ("requant_pp_bits", "8", "8 or 16", '"8"'),
    ("pe_product_reg", 1, "true or false", "1"),
    ("pe_weight_reg", "yes", "true or false", '"yes"'),
    ("array_input_reg", 0, "true or false", "0"),
    ("dsp_primitive", "xilinx", '"none" or "ecp5"', '"xilinx"'),
    ("dsp_primitive", True, '"none" or "ecp5"', "true"),
    ("operand_isolation", 1, "true or false", "1"),
    ("operand_isolation", "on", "true or false", '"on"'),
    ("res_depth", 15, "an integer from 16 (at least rows) to 4096", "15"),
    ("res_depth", 4097, "an integer from 16 (at least rows) to 4096", "4097"),
    ("res_depth", True, "an integer from 16 (at least rows) to 4096", "true"),
    ("clock_mhz", 0, "a number greater than 0 and at most 2000", "0"),
    ("clock_mhz", -5.0, "a number greater than 0 and at most 2000", "-5.0"),
    ("clock_mhz", 2000.5, "a number greater than 0 and at most 2000", "2000.5"),
    ("clock_mhz", float("inf"), "a number greater than 0 and at most 2000", "inf"),
    ("clock_mhz", float("nan"), "a number greater than 0 and at most 2000", "nan"),
    ("clock_mhz", True, "a number greater than 0 and at most 2000", "true"),
    ("clock_mhz", "200", "a number greater than 0 and at most 2000", '"200"'),
]


@pytest.mark.parametrize("key,value,allowed,shown", INVALID, ids=lambda v: repr(v)[:20])
def test_invalid_value(key, value, allowed, shown):
    with pytest.raises(ConfigError) as info:
        GemmConfig(**{key: value})
    message = f"{key}: {shown} is not allowed ({allowed})"
    assert str(info.value) == message
    assert "\n" not in str(info.value)
    assert info.value.key == key and info.value.source is None


@pytest.mark.parametrize("kw", [{"dataflow": "os"}, {"pe_product_reg": False},
                                {"pe_weight_reg": False}, {"array_input_reg": False}],
                         ids=lambda kw: next(iter(kw)))
def test_dsp_primitive_needs_ws_and_the_registers_it_holds(kw):
    """The DSP block's registers are w_cur, prod and a copy of the activation register, fed
    from the array's input register: without one of them there is nothing to hold."""
    assert GemmConfig(dsp_primitive="ecp5").dsp_primitive == "ecp5"
    with pytest.raises(ConfigError, match=r'^dsp_primitive: "ecp5" is not allowed \("none" '
                                          r'unless dataflow is "ws" and pe_product_reg'):
        GemmConfig(dsp_primitive="ecp5", **kw)


def test_pe_registers_are_ws_only():
    """An os PE has neither register: leaving one out is an error naming the key."""
    assert GemmConfig(dataflow="ws", pe_product_reg=False, pe_weight_reg=False).pe_weight_reg is False
    for key in ("pe_product_reg", "pe_weight_reg"):
        with pytest.raises(ConfigError) as info:
            GemmConfig(dataflow="os", **{key: False})
        assert str(info.value) == (f'{key}: false is not allowed (true for dataflow "os": its '
                                   f'PE has no such register)')


def test_requant_pp_bits():
    """8 by default (the ASIC's Fmax); 16, read from TOML, is written back and changes the
    digest (a different design)."""
    assert GemmConfig().requant_pp_bits == 8
    cfg = parse_toml("requant_pp_bits = 16\n")
    assert cfg.requant_pp_bits == 16
    assert "requant_pp_bits = 16\n" in cfg.to_toml()
    assert parse_toml(cfg.to_toml()) == cfg
    assert cfg.digest() != GemmConfig().digest()


def test_operand_isolation():
    """Off by default; on in both dataflows, read from TOML and written back; it needs the
    array's input register (the register that holds the operands)."""
    assert GemmConfig().operand_isolation is False
    for df in ("ws", "os"):
        cfg = parse_toml(f'dataflow = "{df}"\noperand_isolation = true\n')
        assert cfg.operand_isolation is True
        assert "operand_isolation = true\n" in cfg.to_toml()
        assert parse_toml(cfg.to_toml()) == cfg
        assert cfg.digest() != GemmConfig(dataflow=df).digest()
    with pytest.raises(ConfigError) as info:
        GemmConfig(array_input_reg=False, operand_isolation=True)
    assert str(info.value) == ("operand_isolation: true is not allowed (false without "
                               "array_input_reg: the array's input register holds the operands)")
    assert info.value.key == "operand_isolation"
    assert GemmConfig(array_input_reg=False).operand_isolation is False


def test_invalid_value_through_toml_names_the_file():
    with pytest.raises(ConfigError) as info:
        parse_toml("rows = 0\n", source="my.toml")
    assert str(info.value) == "my.toml: rows: 0 is not allowed (an integer from 1 to 64)"
    assert info.value.source == "my.toml"


def test_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_replace_checks_again():
    with pytest.raises(ConfigError, match=r"^cols: 0 is not allowed"):
        dataclasses.replace(GemmConfig(), cols=0)


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        GemmConfig().rows = 4


def test_toml_array_and_table_values_are_rejected():
    with pytest.raises(ConfigError) as info:
        parse_toml("rows = [1, 2]")
    assert str(info.value) == "rows: [1, 2] is not allowed (an integer from 1 to 64)"
    with pytest.raises(ConfigError) as info:
        parse_toml("rows = {a = 1}")
    assert str(info.value) == 'rows: {"a": 1} is not allowed (an integer from 1 to 64)'


# -- acc_width derivation -------------------------------------------------------------------------

@pytest.mark.parametrize("k_max,width", [
    (1, 32), (4096, 32), (131071, 32), (131072, 33), (262143, 33), (262144, 34),
    ((1 << 24) - 1, 39),
])
def test_derived_acc_width(k_max, width):
    assert derived_acc_width(k_max) == width
    cfg = GemmConfig(k_max=k_max)
    assert cfg.acc_width is None and cfg.acc_bits == width
    assert cfg.lane_bits == 8 * -(-width // 8)


def test_derived_width_holds_the_worst_case_sum():
    for k in (131071, 131072):
        w = derived_acc_width(k)
        assert 16384 * k <= (1 << (w - 1)) - 1          # k products of (-128) * (-128)
        assert -16256 * k >= -(1 << (w - 1))            # k products of (-128) * 127


def test_explicit_acc_width_at_the_boundary():
    assert GemmConfig(k_max=131071, acc_width=32).acc_bits == 32
    with pytest.raises(ConfigError) as info:
        GemmConfig(k_max=131072, acc_width=32)
    assert str(info.value) == \
        "acc_width: 32 is not allowed (an integer from 33 to 64 for k_max = 131072)"
    assert GemmConfig(k_max=131072, acc_width=33).acc_bits == 33


def test_explicit_acc_width_wider_than_needed():
    cfg = GemmConfig(acc_width=40)
    assert cfg.acc_bits == 40 and cfg.lane_bits == 40
    assert GemmConfig(acc_width=33).lane_bits == 40


def test_bad_k_max_is_reported_before_acc_width():
    with pytest.raises(ConfigError, match=r"^k_max: "):
        GemmConfig(k_max=0, acc_width=20)


# -- keys and sections ---------------------------------------------------------------------------

def test_unknown_key():
    with pytest.raises(ConfigError) as info:
        parse_toml('name = "npu"\nrow = 4\n', source="c.toml")
    assert str(info.value) == ("c.toml: row: unknown key (allowed: name, rows, cols, dataflow, "
                               "k_max, acc_width, rounding, requant_lanes, requant_pp_bits, pe_product_reg, pe_weight_reg, array_input_reg, dsp_primitive, operand_isolation, acc_depth, res_depth, clock_mhz, softmax, "
                               "attention)")
    assert info.value.key == "row"


def test_unknown_key_from_python():
    with pytest.raises(TypeError):
        GemmConfig(row=4)           # dataclass keyword check; TOML users get ConfigError


@pytest.mark.parametrize("section", ["attn", "foo"])
def test_unknown_section(section):
    with pytest.raises(ConfigError) as info:
        parse_toml(f"rows = 4\n[{section}]\nF = 8\n")
    assert str(info.value) == f"[{section}]: unknown section (allowed: [softmax], [attention])"
    assert info.value.key == f"[{section}]"


def test_softmax_section_defaults_round_trip_and_digest():
    cfg = parse_toml("rows = 4\n[softmax]\nlanes = 2\nB = 8\n")
    assert cfg.softmax == SoftmaxConfig(lanes=2, B=8)
    assert (cfg.softmax.F, cfg.softmax.N_max, cfg.softmax.G) == (24, 32768, 16)   # osi8.md
    assert parse_toml(cfg.to_toml()) == cfg
    assert cfg.digest() != dataclasses.replace(cfg, softmax=None).digest()
    assert cfg.to_dict()["softmax"] == {"F": 24, "B": 8, "N_max": 32768, "G": 16, "lanes": 2}
    assert load_config().softmax is None


@pytest.mark.parametrize("text, message", [
    ("[softmax]\nF = 7\n", "softmax.F: 7 is not allowed (an integer from 8 to 30)"),
    ("[softmax]\nlanes = 3\n", "softmax.B: 16 is not allowed (a multiple of softmax.lanes = 3)"),
    ("[softmax]\nN_max = 0\n", "softmax.N_max: 0 is not allowed (an integer from 1 to 16777216)"),
    ("[softmax]\nlut_rom_scale = -1.0\n",
     "softmax.lut_rom_scale: -1.0 is not allowed (a number greater than 0, or absent)"),
    ("[softmax]\nf = 24\n",
     "softmax.f: unknown key (allowed: F, B, N_max, G, lanes, lut_rom_scale)"),
    ("softmax = 3\n", "[softmax]: must be a table, not 3"),
])
def test_softmax_section_errors(text, message):
    with pytest.raises(ConfigError) as info:
        parse_toml(text, source="s.toml")
    assert str(info.value) == f"s.toml: {message}"


def test_attention_section_defaults_round_trip_and_digest():
    cfg = parse_toml("rows = 4\n[attention]\nd = 8\n")
    assert cfg.attention == AttentionConfig(d=8)
    assert (cfg.attention.d, cfg.attention.heads, cfg.attention.q_block) == (8, 12, 4)
    assert AttentionConfig() == AttentionConfig(d=64, heads=12, q_block=4)  # docs/attention.md
    assert cfg.softmax is None
    assert cfg.osi8 == SoftmaxConfig()            # no [softmax]: the OSI8 defaults
    assert parse_toml(cfg.to_toml()) == cfg
    assert cfg.to_toml().endswith("\n\n[attention]\nd = 8\nheads = 12\nq_block = 4\n")
    assert cfg.digest() != dataclasses.replace(cfg, attention=None).digest()
    assert cfg.digest() != dataclasses.replace(cfg, attention=AttentionConfig(d=8, heads=1)).digest()
    assert cfg.to_dict()["attention"] == {"d": 8, "heads": 12, "q_block": 4}
    assert load_config().attention is None        # not in the embedded default
    assert "[attention]" not in default_toml()


def test_attention_with_softmax_section():
    cfg = parse_toml("[attention]\nq_block = 1\nheads = 256\nd = 256\n[softmax]\nF = 20\nG = 12\n")
    assert cfg.attention == AttentionConfig(d=256, heads=256, q_block=1)
    assert (cfg.osi8.F, cfg.osi8.G, cfg.osi8.B, cfg.osi8.N_max) == (20, 12, 16, 32768)
    text = cfg.to_toml()
    assert text.index("[softmax]") < text.index("[attention]")   # declaration order
    assert parse_toml(text) == cfg and parse_toml(text).to_toml() == text
    assert list(cfg.to_dict()) == [f.name for f in dataclasses.fields(GemmConfig)]


def test_one_section_toml_is_unchanged():
    # Build caches are named by digest: a configuration with only [softmax] must keep its text.
    text = GemmConfig(softmax=SoftmaxConfig()).to_toml()
    assert text.endswith("clock_mhz = 280.0\n\n[softmax]\nF = 24\nB = 16\nN_max = 32768\n"
                         "G = 16\nlanes = 1\n")


@pytest.mark.parametrize("text, message", [
    ("[attention]\nd = 0\n", "attention.d: 0 is not allowed (an integer from 1 to 256)"),
    ("[attention]\nd = 257\n", "attention.d: 257 is not allowed (an integer from 1 to 256)"),
    ("[attention]\nd = 8.0\n", "attention.d: 8.0 is not allowed (an integer from 1 to 256)"),
    ("[attention]\nheads = 0\n",
     "attention.heads: 0 is not allowed (an integer from 1 to 256)"),
    ("[attention]\nheads = 300\n",
     "attention.heads: 300 is not allowed (an integer from 1 to 256)"),
    ("[attention]\nq_block = 65\n",
     "attention.q_block: 65 is not allowed (an integer from 1 to 64)"),
    ("[attention]\nq_block = true\n",
     "attention.q_block: true is not allowed (an integer from 1 to 64)"),
    ("[attention]\nq_block = \"4\"\n",
     'attention.q_block: "4" is not allowed (an integer from 1 to 64)'),
    ("[attention]\nF = 24\n",
     "attention.F: unknown key (allowed: d, heads, q_block, rescale_lanes)"),
    ("[attention]\nd = 32\nrescale_lanes = 3\n",
     "attention.rescale_lanes: 3 is not allowed (a divisor of attention.d = 32, or absent)"),
    ("[attention]\nd = 4\nrescale_lanes = 8\n",
     "attention.rescale_lanes: 8 is not allowed (a divisor of attention.d = 4, or absent)"),
    ("[attention]\nrescale_lanes = 0\n",
     "attention.rescale_lanes: 0 is not allowed (a divisor of attention.d = 64, or absent)"),
    ("attention = 3\n", "[attention]: must be a table, not 3"),
])
def test_attention_section_errors(text, message):
    with pytest.raises(ConfigError) as info:
        parse_toml(text, source="a.toml")
    assert str(info.value) == f"a.toml: {message}"
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("d, given, width", [(64, None, 4), (32, None, 4), (6, None, 3),
                                             (9, None, 3), (7, None, 1), (1, None, 1),
                                             (64, 16, 16), (6, 6, 6)])
def test_attention_rescale_width(d, given, width):
    """rescale_lanes when given; else the largest divisor of d not above 4."""
    att = AttentionConfig(d=d, rescale_lanes=given)
    assert att.rescale_width == width
    text = GemmConfig(attention=att).to_toml()
    assert ("rescale_lanes" in text) == (given is not None)
    assert parse_toml(text).attention == att


def test_attention_errors_from_python():
    with pytest.raises(ConfigError) as info:
        AttentionConfig(q_block=0)
    assert str(info.value) == "attention.q_block: 0 is not allowed (an integer from 1 to 64)"
    assert info.value.key == "attention.q_block"
    with pytest.raises(ConfigError) as info:
        GemmConfig(attention={"d": 8})
    assert str(info.value) == 'attention: {"d": 8} is not allowed (an [attention] table)'
    with pytest.raises(ConfigError, match=r"^attention\.d: "):
        dataclasses.replace(AttentionConfig(), d=-1)


def test_invalid_toml_is_one_line():
    with pytest.raises(ConfigError) as info:
        parse_toml("rows = \n", source="bad.toml")
    text = str(info.value)
    assert text.startswith("bad.toml: invalid TOML: ") and "\n" not in text


def test_not_utf8(tmp_path):
    path = tmp_path / "x.toml"
    path.write_bytes(b'name = "\xff"\n')
    with pytest.raises(ConfigError, match=r"x\.toml: not UTF-8 text"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.toml")


def test_empty_file_is_the_default():
    assert parse_toml("") == GemmConfig()


# -- round trip and digest -------------------------------------------------------------------------

ROUND_TRIP = [
    GemmConfig(),
    GemmConfig(name="x", rows=1, cols=64, dataflow="os", k_max=1, rounding="double",
               acc_depth=2, res_depth=4, clock_mhz=0.5),
    GemmConfig(k_max=131072, acc_width=64, clock_mhz=1234.5678),
    GemmConfig(name="both", softmax=SoftmaxConfig(F=16, B=4, lanes=2),
               attention=AttentionConfig(d=1, heads=3, q_block=64)),
]


@pytest.mark.parametrize("cfg", ROUND_TRIP, ids=lambda c: c.name + str(c.rows))
def test_round_trip(cfg):
    text = cfg.to_toml()
    assert parse_toml(text) == cfg
    assert parse_toml(text).to_toml() == text
    assert text.endswith("\n")


def test_to_toml_is_deterministic_and_ordered():
    text = GemmConfig().to_toml()
    assert text == GemmConfig().to_toml()
    keys = [line.split(" = ")[0] for line in text.splitlines() if not line.startswith("#")]
    assert keys == ["name", "rows", "cols", "dataflow", "k_max", "rounding", "requant_pp_bits",
                    "pe_product_reg",
                    "pe_weight_reg", "array_input_reg", "dsp_primitive", "operand_isolation",
                    "acc_depth", "res_depth", "clock_mhz"]
    assert "# acc_width = 32  (derived from k_max)" in text
    assert "# requant_lanes = 4  (derived from cols)" in text
    assert "acc_width = 48\n" in GemmConfig(acc_width=48).to_toml()
    assert "requant_lanes = 3\n" in GemmConfig(requant_lanes=3).to_toml()
    assert GemmConfig(cols=5).rq_lanes == 2 and GemmConfig(cols=4).rq_lanes == 1


def test_digest():
    d = GemmConfig().digest()
    assert len(d) == 64 and int(d, 16) >= 0
    assert d == GemmConfig().digest()
    assert d == GemmConfig(acc_width=32).digest()        # same hardware, same digest
    assert d != GemmConfig(rows=8).digest()
    assert d != GemmConfig(clock_mhz=201.0).digest()


def test_to_dict():
    assert GemmConfig().to_dict()["acc_width"] is None
    resolved = GemmConfig().to_dict(resolved=True)
    assert resolved["acc_width"] == 32
    assert list(resolved) == [f.name for f in dataclasses.fields(GemmConfig)]
