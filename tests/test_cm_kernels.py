"""The Cortex-M MAC kernel variants on the emulated Cortex-M4 (qemu-mps2-an386), case by case.

* Fuzz: for each of conv, depthwise and fully connected, int8 and INT4 weights, a few hundred
  small random layers (tests/kernel_harness.py: odd channel counts, SAME/VALID, strides,
  dilation, groups, depth multipliers, batches, and hard quantisation: left shifts, huge biases,
  dead channels, narrow activation ranges, extreme zero points, no bias) run with the variant
  aqedge.codegen.dispatch.select() picks, in its own weight layout, against the portable loop
  bodies of firmware/include/aq_mac_impl.h (bit-exact with TFLite Micro) on the same data, in a
  handful of QEMU runs. Every output byte must match, and every variant select() returns for
  such layers must have run.
* CMSIS-NN (only with $TFLM_TREE naming a CMSIS-NN tree, or a folder holding one): a few
  realistic layer shapes, int8 and INT4, bit-exact with CMSIS-NN's kernels.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import kernel_harness as kh
from aqedge.codegen import tflm_lib

from conftest import TFLM_CACHE

TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm")
MISSING = [t for t in TOOLS if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"{' and '.join(MISSING)} not found (make setup installs them)")

#: Random layers per kind and weight type (besides the TYPICAL shapes, 3 seeds each).
RANDOM_CASES = 170
COMBOS = [(kind, s4) for kind in kh.KINDS for s4 in (False, True)]
COMBO_IDS = [f"{kind}-{'s4' if s4 else 's8'}" for kind, s4 in COMBOS]


def _fuzz_cases(kind: str, s4: bool) -> list[kh.Case]:
    """The TYPICAL shapes (plain, and twice with hard quantisation) and random small layers,
    every other one hard (kernel_harness.fuzz_cases; bench/fuzz_ops.py --cortex-m runs
    thousands per variant)."""
    return kh.fuzz_cases(kind, s4, RANDOM_CASES)


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory) -> list[kh.Result]:
    """Every fuzz case of every kind and weight type, run in one go (a handful of images)."""
    cases = [c for kind, s4 in COMBOS for c in _fuzz_cases(kind, s4)]
    return kh.run_cases(cases, "portable", tmp_path_factory.mktemp("cm-fuzz"), jobs=2,
                        min_instructions=0)


def _why(r: kh.Result) -> str:
    hard = f" [{', '.join(r.case.hard)}]" if r.case.hard else ""
    return (f"{r.case.kind} {r.case.label}{' INT4' if r.case.s4 else ''} seed {r.case.seed}"
            f"{hard}, variant {r.variant}: {r.mismatch}")


@pytest.mark.parametrize(("kind", "s4"), COMBOS, ids=COMBO_IDS)
def test_bit_exact_with_portable(fuzz_results, kind, s4):
    """Every output byte of every fuzz case of this kind and weight type matches the portable
    loops (and in place, at lower's lead, matches out of place)."""
    results = [r for r in fuzz_results if r.case.kind == kind and r.case.s4 == s4]
    assert len(results) >= RANDOM_CASES
    assert sum(bool(r.case.hard) for r in results) >= RANDOM_CASES // 3
    bad = [_why(r) for r in results if not r.bit_exact]
    if bad:
        pytest.fail(f"{len(bad)} of {len(results)} cases differ:\n" + "\n".join(bad[:20]),
                    pytrace=False)


@pytest.mark.parametrize(("kind", "s4"), COMBOS, ids=COMBO_IDS)
def test_every_variant_exercised(fuzz_results, kind, s4):
    """The variants select() returns for layers of this kind (TYPICAL shapes and random ones
    of any size) all ran in the fuzz, so with more than one, more than one was exercised."""
    ran = {r.variant for r in fuzz_results if r.case.kind == kind and r.case.s4 == s4}
    exist = kh.variant_names(kind, s4)
    assert exist <= ran, f"never fuzzed: {sorted(exist - ran)} (fuzzed: {sorted(ran)})"
    assert len(ran) > 1 or len(exist) == 1


# ---- CMSIS-NN ---------------------------------------------------------------------------------

CMSIS_TREES = [t for t in tflm_lib.trees_from_env() if tflm_lib.tree_kind(t) == "cmsis-nn"]
CMSIS_SKIP = ("no CMSIS-NN TensorFlow Lite Micro tree: set TFLM_TREE to a tree made by "
              "create_tflm_tree.py with OPTIMIZED_KERNEL_DIR=cmsis_nn, or to a folder holding "
              "one (CI sets it)")
#: Realistic layers (no hard quantisation: CMSIS-NN, like TFLite, leaves int32 overflow undefined).
CMSIS_SHAPES = [
    ("conv", dict(h=6, w=6, in_c=16, out_c=32, k=1)),
    ("conv", dict(h=5, w=5, in_c=13, out_c=7, k=1)),
    ("conv", dict(h=8, w=8, in_c=8, out_c=16, k=3)),
    ("conv", dict(h=9, w=9, in_c=16, out_c=24, k=3, stride=2, padding="valid")),
    ("conv", dict(h=16, w=16, in_c=3, out_c=8, k=3, stride=2)),
    ("conv", dict(h=1, w=12, in_c=8, out_c=8, k=(1, 3))),
    ("conv", dict(h=3, w=3, in_c=128, out_c=64, k=1)),
    ("depthwise", dict(h=8, w=8, in_c=32)),
    ("depthwise", dict(h=9, w=9, in_c=24, stride=2)),
    ("depthwise", dict(h=6, w=6, in_c=8, multiplier=2)),
    ("depthwise", dict(h=8, w=8, in_c=13, k=5)),
    ("depthwise", dict(h=5, w=5, in_c=96)),
    ("fully_connected", dict(depth=256, out_c=10)),
    ("fully_connected", dict(depth=99, out_c=7)),
    ("fully_connected", dict(depth=64, out_c=16, batches=2)),
]


@pytest.fixture(scope="module")
def cmsis_results(tmp_path_factory) -> list[kh.Result]:
    """The CMSIS_SHAPES with int8 and INT4 weights and one per-channel fully connected layer,
    run against CMSIS-NN."""
    if not CMSIS_TREES:
        pytest.skip(CMSIS_SKIP)
    cases = [kh.make_case(kind, s4=s4, seed=500 + i, **shape)
             for i, (kind, shape) in enumerate(CMSIS_SHAPES) for s4 in (False, True)]
    cases.append(kh.make_case("fully_connected", depth=200, out_c=12, per_channel=True, seed=77))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(TFLM_CACHE))  # the CMSIS-NN objects of the other tests
        return kh.run_cases(cases, "cmsis-nn", tmp_path_factory.mktemp("cm-cmsis"), jobs=2,
                            min_instructions=0, tflm_tree=CMSIS_TREES[0])


def test_bit_exact_with_cmsis_nn(cmsis_results):
    """aqedge's variants and CMSIS-NN agree byte for byte on realistic layers (which also checks
    that both read TFLite's INT4 packing the same way)."""
    bad = [_why(r) for r in cmsis_results if not r.bit_exact]
    if bad:
        pytest.fail(f"{len(bad)} of {len(cmsis_results)} cases differ from CMSIS-NN:\n"
                    + "\n".join(bad), pytrace=False)
    assert all(r.peer_instructions > 0 and r.aq_instructions > 0 for r in cmsis_results)
