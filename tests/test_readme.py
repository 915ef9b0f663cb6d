"""The command sequences of the README and docs/usage.md, run as written in a fresh working directory
on a tiny model folder named like the paper's: only --max_generated_tokens, --num_gpus and the layer
id change. And the README's layout is the tree's."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import torch
from conftest import PROBLEMS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "DeepSeek-R1-Distill-Qwen-1.5B"


def readme_sequence(name: str) -> list[str]:
    """The commands of the bash block tagged `# readme-sequence: name` (README.md or docs/usage.md),
    one per command."""
    text = ""
    for page in ("README.md", os.path.join("docs", "usage.md")):
        with open(os.path.join(ROOT, page), encoding="utf-8") as handle:
            text += handle.read()
    blocks = re.findall(r"```bash\n# readme-sequence: (\w+)\n(.*?)```", text, flags=re.S)
    body = dict(blocks)[name]
    return [cmd.strip() for cmd in body.replace("\\\n", " ").splitlines() if cmd.strip()]


def run(command: str, cwd: str, layer: int) -> subprocess.CompletedProcess:
    command = (command.replace("--max_generated_tokens 16000", "--max_generated_tokens 32")
               .replace("maxlen16000", "maxlen32").replace("--num_gpus 8", "--num_gpus 2")
               .replace("layer19", f"layer{layer}").replace("--layer_id 19", f"--layer_id {layer}")
               .replace("--steer_layer 19", f"--steer_layer {layer}"))
    argv = shlex.split(command)
    assert argv[0] == "python" and os.path.isfile(os.path.join(ROOT, argv[1])), command
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, os.path.join(ROOT, argv[1]), *argv[2:]], cwd=cwd, env=env,
                          capture_output=True, text=True)


def workdir(tmp_path, tiny_dir) -> str:
    cwd = str(tmp_path)
    shutil.copytree(tiny_dir, os.path.join(cwd, MODEL))
    for name, problems in (("Math_Train", PROBLEMS * 2), ("Math_AIME2024", PROBLEMS[:4])):
        os.makedirs(os.path.join(cwd, "Data", name))
        with open(os.path.join(cwd, "Data", name, "test.jsonl"), "w") as handle:
            for i, problem in enumerate(problems):
                handle.write(json.dumps({"problem": problem, "answer": str(i)}) + "\n")
    os.makedirs(os.path.join(cwd, "vectors", MODEL))
    torch.save(torch.randn(32), os.path.join(cwd, "vectors", MODEL, "steer_vector_layer2_conf_mixed.pt"))
    return cwd


def test_released_vector_quick_start_runs_as_written(tiny_dirs, tmp_path):
    cwd = workdir(tmp_path, tiny_dirs["qwen2"])
    commands = readme_sequence("released")
    assert [shlex.split(c)[1] for c in commands] == ["transformer_inference_steer_dp.py", "merge_shards.py", "check.py"]
    for command in commands:
        proc = run(command, cwd, layer=2)
        assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "released constants for DeepSeek-R1-Distill-Qwen-1.5B" in run(commands[0], cwd, 2).stdout
    assert "accuracy" in proc.stdout.splitlines()[1]


def test_extract_yourself_sequence_runs_as_written(tiny_dirs, tmp_path):
    cwd = workdir(tmp_path, tiny_dirs["qwen2"])
    commands = readme_sequence("extract")
    assert [shlex.split(c)[1] for c in commands] == [
        "transformer_inference_dp.py", "merge_shards.py", "hidden_config_ridge.py", "hidden_analysis_auto.py",
        "transformer_inference_steer_dp.py", "merge_shards.py", "check.py"]
    layer = 19
    for command in commands:
        proc = run(command, cwd, layer)
        assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-2000:])
        if "hidden_config_ridge.py" in command:
            layer = int(proc.stdout.strip().splitlines()[-1])  # the best layer id, the script's last line
            assert "records used: 10" in proc.stdout
    folder = os.path.join(cwd, "outputs", MODEL, "Math_Train")
    assert os.path.isfile(os.path.join(folder, "hidden_0.pt"))
    assert os.path.isfile(os.path.join(cwd, "outputs", MODEL, f"steer_vector_layer{layer}_conf_mixed.json"))
    assert "accuracy" in proc.stdout.splitlines()[1] and "own_steer_temp0.7_maxlen32" in proc.stdout


def test_the_layout_section_names_every_module_and_folder_that_exists():
    """Every name in the README's layout block exists, and every module of the package and every
    top-level folder it should name is named there."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        text = handle.read()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    named = set(re.findall(r"[\w]+\.(?:py|sh|md)\b", block)) | {f"{d}/" for d in re.findall(r"^\s*(\w+)/", block, re.M)}
    package = os.path.join(ROOT, "rebalance")
    for folder, dirs, files in os.walk(package):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = os.path.relpath(folder, package)
        if rel != ".":
            assert f"{os.path.basename(folder)}/" in named, f"rebalance/{rel}/ is not in the README's layout"
        for name in files:
            if name.endswith(".py") and name != "__init__.py":
                assert name in named, f"rebalance/{os.path.join(rel, name)} is not in the README's layout"
    for name in named:
        if name.endswith("/"):
            assert os.path.isdir(os.path.join(ROOT, name)) or os.path.isdir(os.path.join(package, name)), name
    files = {name for folder, _, names in os.walk(ROOT) if ".git" not in folder for name in names}
    assert [name for name in named if "." in name and name not in files] == []
