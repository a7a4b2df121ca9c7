"""The ComfyUI node pack, loaded the way ComfyUI loads a custom node folder, and run on an API workflow.

ComfyUI is not installed here; :func:`run_workflow` does what its executor does with an
API-format prompt: look each ``class_type`` up in ``NODE_CLASS_MAPPINGS``, resolve links
``[node_id, output_index]``, call the method named by ``FUNCTION`` with the inputs as keywords
and keep the returned tuple. ``LoadImage`` stands in for ComfyUI's own node: it reads a PNG
the way ComfyUI does (RGB, /255 as float32, a batch axis in front).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dotrestore.cli import main

from support import write_images


def load_pack(tmp_path):
    """A custom_nodes folder as the README describes, imported by path like ComfyUI does."""
    folder = tmp_path / "custom_nodes" / "dotrestore_nodes"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("from dotrestore.comfyui import NODE_CLASS_MAPPINGS, "
                                        "NODE_DISPLAY_NAME_MAPPINGS\n")
    spec = importlib.util.spec_from_file_location("dotrestore_nodes", folder / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LoadImage:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "load"

    def load(self, image: str):
        pixels = np.asarray(Image.open(image).convert("RGB")).astype(np.float32) / 255.0
        return (torch.from_numpy(pixels)[None],)


def run_workflow(prompt: dict, mappings: dict) -> dict:
    """Execute an API-format prompt; returns every node's outputs by id."""
    outputs: dict[str, tuple] = {}

    def execute(node_id: str) -> tuple:
        if node_id not in outputs:
            node = prompt[node_id]
            cls = mappings[node["class_type"]]
            kwargs = {k: execute(v[0])[v[1]] if isinstance(v, list) else v for k, v in node["inputs"].items()}
            result = getattr(cls(), cls.FUNCTION)(**kwargs)
            assert isinstance(result, tuple) and len(result) == len(cls.RETURN_TYPES)
            outputs[node_id] = result
        return outputs[node_id]

    for node_id in prompt:
        execute(node_id)
    return outputs


def test_pack_imports_without_comfyui_and_declares_valid_nodes(tmp_path):
    code = "import sys; from dotrestore.comfyui import NODE_CLASS_MAPPINGS; " \
           "assert not any(m == 'comfy' or m.startswith(('comfy.', 'comfy_')) for m in sys.modules); " \
           "print(sorted(NODE_CLASS_MAPPINGS))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    pack = load_pack(tmp_path)
    names = pack.NODE_DISPLAY_NAME_MAPPINGS
    assert {"Load DOT operator", "DOT apply", "DOT fit"} <= set(names.values())
    assert set(names) == set(pack.NODE_CLASS_MAPPINGS)
    for key, cls in pack.NODE_CLASS_MAPPINGS.items():
        types = cls.INPUT_TYPES()
        assert set(types) <= {"required", "optional", "hidden"} and "required" in types
        for section in types.values():
            for name, spec in section.items():
                assert isinstance(spec, tuple) and 1 <= len(spec) <= 2, (key, name)
                assert isinstance(spec[0], (str, list)), (key, name)
                if len(spec) == 2:
                    assert isinstance(spec[1], dict)
        assert isinstance(cls.RETURN_TYPES, tuple) and all(isinstance(t, str) for t in cls.RETURN_TYPES)
        assert callable(getattr(cls, cls.FUNCTION)) and isinstance(cls.CATEGORY, str)
    apply_types = pack.NODE_CLASS_MAPPINGS["DOTApply"].INPUT_TYPES()["required"]
    assert apply_types["image"] == ("IMAGE",) and pack.NODE_CLASS_MAPPINGS["DOTApply"].RETURN_TYPES == ("IMAGE",)
    alpha = apply_types["alpha"]
    assert alpha[0] == "FLOAT" and (alpha[1]["min"], alpha[1]["max"]) == (-1.0, 2.0)


@pytest.mark.parametrize("vae", ["pixel", pytest.param("taef2", marks=pytest.mark.slow)])
def test_workflow_load_then_apply_equals_the_cli(tmp_path, vae):
    src = write_images(tmp_path / "restored", 3, seed=0, size=(40, 48))
    tgt = write_images(tmp_path / "clean", 3, seed=1, size=(40, 48))
    op, out = tmp_path / "op.safetensors", tmp_path / "out"
    assert main(["fit", "--source", str(src), "--target", str(tgt), "--vae", vae, "--device", "cpu",
                 "--no-progress", "-o", str(op)]) == 0
    image = src / "img01.png"
    assert main(["apply", str(op), str(image), "-o", str(out), "--alpha", "0.5", "--device", "cpu",
                 "--no-progress"]) == 0
    prompt = json.loads(json.dumps({  # exactly what ComfyUI's "Save (API format)" writes
        "1": {"class_type": "LoadDOTOperator", "inputs": {"operator_path": str(op), "device": "cpu"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": str(image)}},
        "3": {"class_type": "DOTApply", "inputs": {"operator": ["1", 0], "image": ["2", 0], "alpha": 0.5}},
    }))
    pack = load_pack(tmp_path)
    result = run_workflow(prompt, {**pack.NODE_CLASS_MAPPINGS, "LoadImage": LoadImage})["3"][0]
    assert result.shape == (1, 40, 48, 3) and result.dtype == torch.float32
    nodes = (result[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    cli = np.asarray(Image.open(out / "img01.png").convert("RGB"))
    assert np.array_equal(nodes, cli)
    assert not np.array_equal(nodes, np.asarray(Image.open(image).convert("RGB")))  # it did transport


def test_fit_node_from_batches_and_from_folders(tmp_path):
    src = write_images(tmp_path / "restored", 3, seed=0, size=(32, 32))
    tgt = write_images(tmp_path / "clean", 3, seed=1, size=(32, 32))
    pack = load_pack(tmp_path)
    fit = pack.NODE_CLASS_MAPPINGS["DOTFit"]()
    batch = {name: torch.stack([LoadImage().load(str(p))[0][0] for p in sorted(folder.glob("*.png"))])
             for name, folder in (("source", src), ("target", tgt))}
    saved = tmp_path / "fitted.safetensors"
    (from_batches,) = fit.fit("pixel", 3, 0.0, "cpu", source=batch["source"], target=batch["target"],
                              save_path=str(saved))
    (from_folders,) = fit.fit("pixel", 3, 0.0, "cpu", source_folder=str(src), target_folder=str(tgt))
    assert saved.exists() and from_batches.n_source_patches_ == from_folders.n_source_patches_ > 0
    assert torch.allclose(torch.as_tensor(from_batches.operator_), torch.as_tensor(from_folders.operator_), atol=1e-5)
    with pytest.raises(ValueError, match="target"):
        fit.fit("pixel", 3, 0.0, "cpu", source=batch["source"])
