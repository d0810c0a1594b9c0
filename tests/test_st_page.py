"""The code examples of sentence-transformers' "Computing Embeddings" page
(sbert.net/examples/sentence_transformer/applications/computing-embeddings), run twice: as written against
sentence-transformers (the oracle), and with the import changed to embedkit. The outputs must agree.

Substitutions, the same for both runs: models that cannot be downloaded here (all-MiniLM-L6-v2,
all-mpnet-base-v2, intfloat/multilingual-e5-large, a local fine-tuned folder) become the packaged
all-MiniLM-L6-v2 folder; CUDA devices become CPU devices; the 100,000 sentences of the multi-process
script become 1,000.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch

BASIC = """
from sentence_transformers import SentenceTransformer

# 1. Load a pretrained Sentence Transformer model
model = SentenceTransformer("all-MiniLM-L6-v2")

# The sentences to encode
sentences = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
]

# 2. Calculate embeddings by calling model.encode()
embeddings = model.encode(sentences)
print(embeddings.shape)
# [3, 384]

# 3. Calculate the embedding similarities
similarities = model.similarity(embeddings, embeddings)
print(similarities)
"""

INITIALIZING = """
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("all-mpnet-base-v2")
# Alternatively, you can pass a path to a local model directory:
model = SentenceTransformer("output/models/mpnet-base-finetuned-all-nli")
model = SentenceTransformer("all-mpnet-base-v2", device="cuda")
embeddings = model.encode(["A sentence on the chosen device"])
"""

PROMPTS = """
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(
    "intfloat/multilingual-e5-large",
    prompts={
        "classification": "Classify the following text: ",
        "retrieval": "Retrieve semantically similar text: ",
        "clustering": "Identify the topic or theme based on the text: ",
    },
)
embeddings = model.encode("How to bake a strawberry cake", prompt_name="retrieval")

model = SentenceTransformer(
    "intfloat/multilingual-e5-large",
    prompts={
        "classification": "Classify the following text: ",
        "retrieval": "Retrieve semantically similar text: ",
        "clustering": "Identify the topic or theme based on the text: ",
    },
    default_prompt_name="retrieval",
)
embeddings_default = model.encode("How to bake a strawberry cake")
embeddings_prompt = model.encode("How to bake a strawberry cake", prompt="Retrieve semantically similar text: ")
"""

SEQUENCE_LENGTH = """
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("all-MiniLM-L6-v2")
print("Max Sequence Length:", model.max_seq_length)

# Change the length to 200
model.max_seq_length = 200

print("Max Sequence Length:", model.max_seq_length)
long_text = " ".join(["word"] * 400)
embeddings = model.encode([long_text, "short"])
"""

MULTI_PROCESS = """
from sentence_transformers import SentenceTransformer


def main():
    model = SentenceTransformer("all-MiniLM-L6-v2")
    inputs = [f"This is sentence number {i}, about topic {i % 13}" for i in range(200)]

    # Encode with multiple GPUs
    embeddings = model.encode(inputs, device=["cuda:0", "cuda:1"])

    # Or start a pool of processes once and reuse it
    pool = model.start_multi_process_pool(["cuda:0", "cuda:1"])
    embeddings_pool = model.encode(inputs, pool=pool, chunk_size=50)
    model.stop_multi_process_pool(pool)
    np.save(OUT + "-device.npy", embeddings)
    np.save(OUT + "-pool.npy", embeddings_pool)


if __name__ == "__main__":
    main()
"""

MULTI_GPU_SCRIPT = """
\"\"\"
This example starts multiple processes (1 per GPU), which encode
sentences in parallel. This gives a near linear speed-up
when encoding large text collections.
\"\"\"

import logging

from sentence_transformers import LoggingHandler, SentenceTransformer

logging.basicConfig(
    format="%(asctime)s - %(message)s", datefmt="%Y-%m-%d %H:%M:%S", level=logging.INFO, handlers=[LoggingHandler()]
)

# Important, you need to shield your code with if __name__.
# Otherwise, CUDA runs into issues when spawning new processes.
if __name__ == "__main__":
    # Create a large list of 100k sentences
    sentences = [f"This is sentence {i}" for i in range(100000)]

    # Define the model
    model = SentenceTransformer("all-MiniLM-L6-v2")

    # Start the multi-process pool on all available CUDA devices
    pool = model.start_multi_process_pool()

    # Compute the embeddings using the multi-process pool
    emb = model.encode_multi_process(sentences, pool)
    print("Embeddings computed. Shape:", emb.shape)

    # Optional: Stop the processes in the pool
    model.stop_multi_process_pool(pool)
    np.save(OUT + ".npy", emb)
"""


def port(code: str, library: str, model_path: str) -> str:
    """The page's code with the substitutions of the module docstring, for ``library``."""
    code = re.sub(
        r'"(all-MiniLM-L6-v2|all-mpnet-base-v2|intfloat/multilingual-e5-large|output/models/[^"]+)"',
        repr(model_path),
        code,
    )
    code = code.replace('"cuda:0", "cuda:1"', '"cpu", "cpu"').replace('device="cuda"', 'device="cpu"')
    code = code.replace("range(100000)", "range(1000)")
    code = code.replace("start_multi_process_pool()", 'start_multi_process_pool(["cpu", "cpu"])')
    return (
        code
        if library == "sentence_transformers"
        else code.replace("from sentence_transformers import", "from embedkit import")
    )


def run_in_process(code: str, library: str, model_path: str, capsys) -> tuple[dict, str]:
    namespace: dict = {}
    exec(compile(port(code, library, model_path), f"<{library} example>", "exec"), namespace)
    return namespace, capsys.readouterr().out


def values(namespace: dict, name: str) -> np.ndarray:
    value = namespace[name]
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def test_basic_example_and_its_published_similarities(minilm_path, capsys):
    theirs, their_out = run_in_process(BASIC, "sentence_transformers", minilm_path, capsys)
    ours, our_out = run_in_process(BASIC, "embedkit", minilm_path, capsys)
    np.testing.assert_allclose(values(ours, "embeddings"), values(theirs, "embeddings"), atol=1e-5)
    assert our_out == their_out  # the printed shape and similarity tensor
    published = [[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411], [0.1046, 0.1411, 1.0000]]  # on the page
    np.testing.assert_allclose(values(ours, "similarities"), published, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(
    "code, names",
    [
        (INITIALIZING, ["embeddings"]),
        (PROMPTS, ["embeddings", "embeddings_default", "embeddings_prompt"]),
        (SEQUENCE_LENGTH, ["embeddings"]),
    ],
    ids=["initializing", "prompt-templates", "input-sequence-length"],
)
def test_page_examples_match_the_oracle(minilm_path, capsys, code, names):
    theirs, their_out = run_in_process(code, "sentence_transformers", minilm_path, capsys)
    ours, our_out = run_in_process(code, "embedkit", minilm_path, capsys)
    for name in names:
        np.testing.assert_allclose(values(ours, name), values(theirs, name), atol=1e-5, err_msg=name)
    assert our_out == their_out
    if code is PROMPTS:  # the prompt really changed the embedding
        np.testing.assert_allclose(values(ours, "embeddings_default"), values(ours, "embeddings"), atol=1e-6)
        assert not np.allclose(
            values(ours, "embeddings"), ours["model"].encode("How to bake a strawberry cake", prompt="")
        )


@pytest.mark.slow
@pytest.mark.parametrize("code", [MULTI_PROCESS, MULTI_GPU_SCRIPT], ids=["multi-process", "multi-gpu-script"])
def test_multi_process_examples_match_the_oracle(minilm_path, tmp_path, code):
    outputs = {}
    for library in ("sentence_transformers", "embedkit"):
        out = str(tmp_path / library)
        script = tmp_path / f"example_{library}.py"  # not sentence_transformers.py, which would shadow it
        script.write_text(f"import numpy as np\nOUT = {out!r}\n" + port(code, library, minilm_path))
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[library] = result
    suffixes = ["-device.npy", "-pool.npy"] if code is MULTI_PROCESS else [".npy"]
    for suffix in suffixes:
        ours, theirs = (
            np.load(str(tmp_path / "embedkit") + suffix),
            np.load(str(tmp_path / "sentence_transformers") + suffix),
        )
        assert ours.shape == theirs.shape and len(ours) in (200, 1000)
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
    if code is MULTI_GPU_SCRIPT:
        assert "Embeddings computed. Shape: (1000, 384)" in outputs["embedkit"].stdout
