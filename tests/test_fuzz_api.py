"""Fuzz suite, the Python API checks what it is given: every public entry point × a table of bad tensors.

Each bad tensor is refused with an :class:`~dotrestore.errors.InputError` (a ``ValueError``)
saying what is wrong, before anything changes: no uint8 image comes out white, no NaN goes
through, nothing fails inside torch. An empty batch gives an empty batch.
"""

from __future__ import annotations

import pytest
import torch

from dotrestore import DOT, InputError

torch.manual_seed(0)
GOOD = torch.rand(2, 3, 24, 24)


def _nan(position: int = 0):
    x = GOOD.clone()
    x[position, 0, 3, 3] = float("nan")
    return x


def _inf():
    x = GOOD.clone()
    x[0, 2, 5, 5] = float("inf")
    return x


#: name → (a (B, 3, H, W)-like value, what the error must say)
BAD = {
    "uint8": (lambda: (GOOD * 255).to(torch.uint8), "uint8 tensor"),
    "int64": (lambda: (GOOD * 255).long(), "int64 tensor"),
    "bool": (lambda: GOOD > 0.5, "bool tensor"),
    "complex": (lambda: GOOD.to(torch.complex64), "complex64 tensor"),
    "0-255 floats": (lambda: GOOD * 255, "expected images in [0, 1]"),
    "negative": (lambda: GOOD - 0.5, "expected images in [0, 1]"),
    "nan": (_nan, "NaN"),
    "inf": (_inf, "infinite"),
    "zero height": (lambda: torch.rand(2, 3, 0, 24), "zero-size"),
    "zero width": (lambda: torch.rand(2, 3, 24, 0), "zero-size"),
    "meta": (lambda: torch.empty(2, 3, 24, 24, device="meta"), "meta tensor"),
    "sparse": (lambda: GOOD.to_sparse(), "sparse"),
    "four channels": (lambda: torch.rand(2, 4, 24, 24), "shape (2, 4, 24, 24)"),
    "five dims": (lambda: torch.rand(1, 2, 3, 24, 24), "shape (1, 2, 3, 24, 24)"),
    "numpy": (lambda: GOOD.numpy(), "ndarray"),
}


@pytest.fixture(scope="module")
def fitted() -> DOT:
    return DOT(codec="pixel", patch_size=3, runtime={"progress": False}).fit(torch.rand(4, 3, 24, 24),
                                                                            torch.rand(4, 3, 24, 24))


def _statistics(dot: DOT):
    return dot.n_source_images_, dot.n_target_images_, dot.mean_source_.clone(), dot.operator_.clone()


#: entry point name → call(dot, x)
ENTRY_POINTS = {
    "transform": lambda dot, x: dot.transform(x),
    "transform one image": lambda dot, x: dot.transform(x[0] if _indexable(x) else x),
    "transform list": lambda dot, x: dot.transform([x[0] if _indexable(x) else x]),
    "iter_alphas": lambda dot, x: list(dot.iter_alphas(x, [0.0, 1.0])),
    "partial_fit": lambda dot, x: dot.partial_fit(x, role="source"),
    "partial_fit stream": lambda dot, x: dot.partial_fit(iter([x]), role="target"),
    "fit": lambda dot, x: DOT(codec="pixel", patch_size=3).fit(x, GOOD),
    "encode": lambda dot, x: dot.encode(x),
}


def _indexable(x) -> bool:
    return isinstance(x, torch.Tensor) and x.ndim >= 4 and x.shape[0] > 0 and not x.is_sparse


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("bad", sorted(BAD))
def test_bad_tensors_are_refused_naming_the_problem(fitted, entry, bad):
    make, says = BAD[bad]
    x = make()
    if entry in ("transform one image", "transform list") and bad in ("five dims",):
        pytest.skip("one image of a 5-D tensor is a 4-D tensor: a shape error of its own kind")
    before = _statistics(fitted)
    with pytest.raises(InputError) as caught:
        ENTRY_POINTS[entry](fitted, x)
    message = str(caught.value)
    if entry in ("transform one image", "transform list") and bad in ("four channels",):
        says = "shape (4, 24, 24)"
    assert says in message, message
    after = _statistics(fitted)
    assert after[:2] == before[:2] and torch.equal(after[2], before[2]) and torch.equal(after[3], before[3])


def test_iter_alphas_takes_batches_only(fitted):
    with pytest.raises(InputError, match=r"\(B, 3, H, W\) tensor, got shape \(3, 24, 24\)"):
        list(fitted.iter_alphas(GOOD[0], [0.0]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_floating_dtype_is_accepted(fitted, dtype):
    out = fitted.transform(GOOD.to(dtype))
    reference = fitted.transform(GOOD)
    assert out.shape == GOOD.shape and out.dtype == torch.float32
    assert float((out - reference).abs().max()) < (0.02 if dtype in (torch.float16, torch.bfloat16) else 1e-5)


def test_rounding_slack_is_clamped(fitted):
    x = GOOD.clone()
    x[0, 0, 0, 0], x[1, 1, 1, 1] = 1 + 5e-4, -5e-4
    assert fitted.transform(x).isfinite().all()


def test_empty_batch_in_empty_batch_out(fitted):
    empty = torch.empty(0, 3, 24, 24)
    out = fitted.transform(empty)
    assert out.shape == (0, 3, 24, 24)
    assert [(a, tuple(x.shape)) for a, x in fitted.iter_alphas(empty, [0.0, 0.5])] == [(0.0, (0, 3, 24, 24)),
                                                                                       (0.5, (0, 3, 24, 24))]
    with pytest.raises(InputError, match="empty batch"):
        DOT(codec="pixel").partial_fit(empty)


def test_the_nan_is_named_by_its_position(fitted):
    with pytest.raises(InputError, match=r"images to transform \[1\]: image contains NaN"):
        fitted.transform(_nan(1))


def test_many_alphas_decode_once(fitted, monkeypatch):
    """x̂0 is decoded once however many α are asked for: each further α costs only its blend."""
    codec = fitted.codec_
    calls = {"encode": 0, "decode": 0}
    for name in calls:
        real = getattr(codec, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(codec, name, counted)
    outputs = list(fitted.iter_alphas(GOOD, [float(a) for a in torch.linspace(-1, 2, 500)]))
    assert len(outputs) == 500 and calls == {"encode": 1, "decode": 1}


def test_long_alpha_sweeps_label_a_few_points():
    from dotrestore.experiment.curve import MAX_ALPHA_LABELS, labelled

    points = [{"alpha": round(-1 + i / 1000, 6)} for i in range(3001)]
    shown = [p["alpha"] for p in labelled(points)]
    assert len(shown) <= MAX_ALPHA_LABELS + 2 and shown[0] == -1.0 and shown[-1] == 2.0 and {0.0, 1.0} <= set(shown)
    assert labelled(points[:5]) == points[:5]


def test_identical_rows_are_measured_once():
    from dotrestore.experiment import evaluation

    images = {("dot", i): torch.full((3, 16, 16), (i % 7) / 7) for i in range(120)}
    encoded = []
    ev = evaluation.Evaluation(list(images), DOT(codec="pixel").prepare(), [])
    ev.encode = lambda pictures: encoded.extend(pictures) or [torch.zeros(1, 3, 16, 16) for _ in pictures]
    ev.update(0, "x", torch.full((3, 16, 16), 0.5), images, {})
    assert len(encoded) == 8  # the clean image and 7 distinct rows
