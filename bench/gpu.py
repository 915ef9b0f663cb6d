#!/usr/bin/env python
"""The GPU measurement, on a random model of DeepSeek-R1-Distill-Qwen-1.5B's shape (Qwen2, hidden 1536,
28 blocks, vocab 151936), built from a config so nothing is downloaded, in bf16. Four parts, each
appending its rows to `gpu_<shape>.jsonl` the moment they are measured (so a run cut off returns
what it had), then a table and JSON of everything measured so far:
  greedy    widest batch first (1, 16, 64), 512 new tokens a row (EOS forbidden, a step boundary
            forced every 32 tokens so steering and capture do their real work): plain `generate`;
            transformers' own continuous batching (`generate_batch`, paged attention), without and
            with its CUDA graphs, unsteered (the anchor); this suite's engine unsteered, steered
            (dynamic ReBalance) and collecting, each eager and compiled (`--compile`)
  sampled   T 0.7, top-p 0.95 at the widest batch: plain, continuous batching, steered eager and compiled
  ragged    a queue of 4 x batch examples whose lengths are forced from a long-tailed law (10 % at
            the limit): plain `generate` in static batches against the steered engine refilling slots
  long      batch 16 with 8,192-token prompts, 64 new tokens: decoding against a long cache
The floor of a decoding step is the bytes it must read (weights, and the key/value cache at the
run's mean context) over the device-to-device copy bandwidth; each row reports its share of it.

  python bench/gpu.py [--parts greedy,sampled,ragged,long]   # on a GPU, into bench/results/
  python bench/gpu.py --rehearse                             # the same code on the CPU, tiny shape

Targets: steered >= 0.95 x plain, collection >= 0.85 x plain, steered >= 0.95 x the unsteered engine
(eager and compiled alike) at every greedy batch size; steered at the widest batch >= 0.9 x
continuous batching with the same graph setting (eager against no graphs, compiled against CUDA
graphs) and, compiled, >= 30 % of the floor; steered at batch 64 >= 20 x batch 1; sampled steered
>= 0.95 x sampled plain; ragged steered >= 1.2 x plain; long-context steered >= 1.0 x plain.
"""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack
import os
import platform
import time

import torch
from common import SAMPLING, bench_problems, plain_generate, tokens_per_second
from ragged import RowLengths, longtail_lengths, static_batches
from transformers import LogitsProcessor

from rebalance.calibration import released
from rebalance.control import ControlFunction
from rebalance.decoding.decode import engine_for, steer_stream
from rebalance.decoding.memory import kv_bytes_per_token
from rebalance.decoding.records import make_table
from rebalance.decoding.sampling import GREEDY, Sampling, SuppressTokens
from rebalance.decoding.sites import num_residual_sites
from rebalance.decoding.steering import Mode, SteeringSetup, site_index
from rebalance.examples import Example, prompt_ids

SHAPES = {
    "r1-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                    num_key_value_heads=2, vocab_size=151936),
    "rehearsal": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=512),
}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<unk>", "ĊĊ", "Ċ"]
TEMPLATE = ("{% for m in messages %}<|im_start|> {{ m['content'] }} <|im_end|> {% endfor %}"
            "{% if add_generation_prompt %}<|im_start|> <think> {% endif %}")


def word_tokenizer(vocab_size: int):
    """A word-level tokenizer with an entry for every id of the model (so any sampled id decodes),
    the chat markers, `<think>` tags, and `ĊĊ` as the step boundary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), vocab_size)})
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token="<unk>", chat_template=TEMPLATE)


def random_model(shape: str, dtype: torch.dtype, device: str):
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=32768, tie_word_embeddings=False)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


class BoundaryEvery(LogitsProcessor):
    """Force the step-boundary token every `every` generated tokens: a random model would rarely
    write one, and steering and capture only work at boundaries."""

    def __init__(self, token: int, every: int):
        self.token, self.every, self.calls = token, every, 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.calls % self.every == 0:
            scores = torch.full_like(scores, float("-inf"))
            scores[:, self.token] = 0.0
        return scores


def copy_bandwidth(device: str, nbytes: int, repeats: int = 10) -> float:
    """Bytes moved per second (read + write) by a device-to-device copy of `nbytes`."""
    src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        dst.copy_(src)
    synchronize(device)
    return 2 * src.numel() * src.element_size() * repeats / (time.perf_counter() - start)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else (platform.processor() or "cpu")


class Bench:
    """The model, tokenizer and steering setup every part measures with, and the step floor."""

    def __init__(self, args):
        self.args = args
        dtype = getattr(torch, args.dtype)
        self.model = random_model(args.shape, dtype, args.device)
        self.tokenizer = word_tokenizer(self.model.config.vocab_size)
        self.table = make_table(self.model, self.tokenizer)
        self.eos = list(self.table.eos_ids)
        self.boundary = self.tokenizer.convert_tokens_to_ids("ĊĊ")
        layer, constants = released("DeepSeek-R1-Distill-Qwen-1.5B")
        layer = min(layer, self.model.config.num_hidden_layers - 1)
        vector = torch.randn(self.model.config.hidden_size, generator=torch.Generator().manual_seed(0))
        self.setup = SteeringSetup(vector, site_index(num_residual_sites(self.model), layer, "input"), Mode.DYNAMIC,
                                   -1.0, ControlFunction(**constants))
        self.weight_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        self.bandwidth = copy_bandwidth(args.device, max(self.weight_bytes, 64 << 20))
        self.per_token = kv_bytes_per_token(self.model.config, torch.finfo(dtype).bits // 8)
        self.entered = ExitStack()  # the engines of the part being measured (their hooks stay registered)

    def meta(self) -> dict:
        args = self.args
        return {"device": device_name(args.device), "torch": torch.__version__,
                "transformers": __import__("transformers").__version__, "cuda": torch.version.cuda,
                "shape": args.shape, **SHAPES[args.shape], "dtype": args.dtype, "new_tokens": args.new_tokens,
                "boundary_every": args.boundary_every, "weight_bytes": self.weight_bytes,
                "copy_bandwidth_GBps": self.bandwidth / 1e9, "floor_step_ms": 1000 * self.floor_s(1, 0),
                "kv_bytes_per_token": self.per_token, "long_context": args.long_context}

    def floor_s(self, batch: int, context: float) -> float:
        """Seconds a decoding step needs at least: the weights and the cache it reads, at copy speed."""
        return (self.weight_bytes + batch * context * self.per_token) / self.bandwidth

    def row(self, setting, name, batch, tok_s, context, **extra) -> dict:
        step_s = batch / tok_s
        return {"setting": setting, "method": name, "batch": batch, "tokens_per_s": tok_s, "step_ms": 1000 * step_s,
                "floor_fraction": self.floor_s(batch, context) / step_s, **extra}

    def shaping(self) -> list:
        return [SuppressTokens(self.eos), BoundaryEvery(self.boundary, self.args.boundary_every)]

    def engine_run(self, kind: str, compiled: bool, sampling: Sampling = GREEDY):
        """run(problems, new_tokens) of the in-flight engine: unsteered, steered or collecting. One
        engine a batch size serves every call (its hooks, and so its compiled step, stay the same),
        entered until `close`; the seconds its compiling took land in `compile_s`."""
        spent = {"compile_s": 0.0}
        engines = {}

        def run(problems, new_tokens):
            engine = engines.get(len(problems))
            if engine is None:
                engine = engine_for(self.model, self.tokenizer, self.table, width=len(problems),
                                    max_new_tokens=new_tokens, steering=self.setup if kind == "steered" else None,
                                    capture_on="cpu" if kind == "collect" else None, processors=self.shaping(),
                                    sampling=sampling)
                if compiled:
                    engine.compile(self.args.compile_backend)
                engines[len(problems)] = self.entered.enter_context(engine)
            engine.max_new_tokens = new_tokens
            for _ in engine.run(Example(i, p, "", {}) for i, p in enumerate(problems)):
                pass
            spent["compile_s"] = sum(e.forward.compile_seconds for e in engines.values())
        return run, spent

    def cb_run(self, graphs: bool, sampling: dict):
        """run(problems, new_tokens) of transformers' own continuous batching (`generate_batch`, paged
        attention), unsteered: the anchor a user would compare against."""
        from transformers import ContinuousBatchingConfig, GenerationConfig

        def run(problems, new_tokens):
            prompts = [prompt_ids(self.tokenizer, p) for p in problems]
            config = GenerationConfig(max_new_tokens=new_tokens, do_sample=bool(sampling), eos_token_id=-1,
                                      pad_token_id=self.tokenizer.pad_token_id, **sampling)
            attention = self.model.config._attn_implementation
            batching = ContinuousBatchingConfig(use_cuda_graph=graphs)
            try:
                out = self.model.generate_batch(inputs=prompts, generation_config=config, progress_bar=False,
                                                continuous_batching_config=batching)
            finally:  # generate_batch may switch the model to its own attention
                self.model.set_attn_implementation(attention)
            assert len(out) == len(prompts), "continuous batching returned fewer results than prompts"
        return run, {}


def greedy_methods(bench: Bench) -> dict:
    """Every way of decoding the greedy part compares, in the order they are timed."""
    methods = {"plain": (lambda ps, n: plain_generate(bench.model, bench.tokenizer, ps, n, bench.eos,
                                                      extra=bench.shaping()[1:]), {}),
               "cb": bench.cb_run(False, {}), "cb_graphs": bench.cb_run(True, {})}
    for kind, compiled in (("engine", False), ("steered", False), ("steered", True), ("engine", True),
                           ("collect", False), ("collect", True)):  # what the targets need first
        methods[kind + ("_compiled" if compiled else "")] = bench.engine_run(kind, compiled)
    return methods


def sampled_methods(bench: Bench) -> dict:
    sampling = Sampling(**SAMPLING)
    return {"plain": (lambda ps, n: plain_generate(bench.model, bench.tokenizer, ps, n, bench.eos,
                                                   extra=bench.shaping()[1:], **SAMPLING), {}),
            "cb": bench.cb_run(False, SAMPLING),
            "steered": bench.engine_run("steered", False, sampling),
            "steered_compiled": bench.engine_run("steered", True, sampling)}


def timed(bench: Bench, setting: str, methods: dict, problems, batch: int, new_tokens: int, context: float,
          emit) -> None:
    for name, (run, spent) in methods.items():
        try:
            run(problems, new_tokens)  # warm-up at full length: kernels, allocator, every shape a compiled step meets
            tok_s = tokens_per_second(lambda ps: run(ps, new_tokens), problems, batch, new_tokens)
        except Exception as err:  # one method that cannot run here (say, no paged attention) leaves a note
            emit({"setting": setting, "method": name, "batch": batch, "error": f"{type(err).__name__}: {err}"[:300]})
            continue
        emit(bench.row(setting, name, batch, tok_s, context, **spent))


def mean_prompt(bench: Bench, problems) -> float:
    return sum(len(prompt_ids(bench.tokenizer, p)) for p in problems) / len(problems)


def part_greedy(bench: Bench, emit) -> None:
    """Greedy rows, widest batch first: the batch the targets are read at comes before any cut-off."""
    args = bench.args
    for batch in sorted((int(b) for b in args.batches.split(",")), reverse=True):
        problems = bench_problems(batch, seed=batch)
        timed(bench, "greedy", greedy_methods(bench), problems, batch, args.new_tokens,
              mean_prompt(bench, problems) + args.new_tokens / 2, emit)


def part_sampled(bench: Bench, emit) -> None:
    args = bench.args
    widest = max(int(b) for b in args.batches.split(","))
    problems = bench_problems(widest, seed=widest)
    timed(bench, "sampled", sampled_methods(bench), problems, widest, args.new_tokens,
          mean_prompt(bench, problems) + args.new_tokens / 2, emit)


def part_ragged(bench: Bench, emit) -> None:
    widest = max(int(b) for b in bench.args.batches.split(","))
    problems = bench_problems(widest, seed=widest)
    for row in ragged_rows(bench, widest, mean_prompt(bench, problems)):
        emit(row)


def part_long(bench: Bench, emit) -> None:
    args = bench.args
    batch, rng = min(16, max(int(b) for b in args.batches.split(","))), torch.Generator().manual_seed(0)
    words = torch.randint(len(SPECIALS), bench.model.config.vocab_size, (batch, args.long_context), generator=rng)
    problems = [" ".join(f"w{int(i)}" for i in line) for line in words]
    methods = greedy_methods(bench)
    timed(bench, "long", {k: methods[k] for k in ("plain", "steered", "steered_compiled")}, problems, batch,
          args.long_tokens, args.long_context + args.long_tokens / 2, emit)


PARTS = {"greedy": part_greedy, "sampled": part_sampled, "ragged": part_ragged, "long": part_long}


def ragged_rows(bench: Bench, width: int, prompt: float) -> list[dict]:
    """A long-tailed queue of 4 x width examples: plain `generate` in static batches of `width`
    (each batch runs until its longest row ends) against the steered engine refilling slots."""
    args, table = bench.args, bench.table
    count, limit = 4 * width, args.new_tokens
    lengths = longtail_lengths(count, limit, seed=width)
    problems = bench_problems(count, seed=count)
    out = []
    for name in ("plain", "steered"):
        start, tokens = time.perf_counter(), 0
        if name == "plain":
            tokens, _ = static_batches(bench.model, bench.tokenizer, problems, width, limit, lengths, table.eos_ids,
                                       extra=[BoundaryEvery(bench.boundary, args.boundary_every)])
        else:
            force = RowLengths(lengths, table.eos_ids[0])
            done = steer_stream(bench.model, bench.tokenizer, table,
                                [Example(i, p, "", {}) for i, p in enumerate(problems)], bench.setup, limit,
                                processors=[BoundaryEvery(bench.boundary, args.boundary_every), force], width=width)
            tokens = sum(len(d.tokens) for d in done)
        synchronize(args.device)
        tok_s = tokens / (time.perf_counter() - start)
        out.append(bench.row("ragged", name, width, tok_s, prompt + sum(lengths) / count / 2))
    return out


def ratio(speed: dict, top: tuple, bottom: tuple, floor: float) -> dict:
    """One target: speed[top] / speed[bottom] against `floor`; not measured when a row is missing."""
    if top not in speed or bottom not in speed:
        return {"ratio": None, "target": floor, "met": None}
    value = speed[top] / speed[bottom]
    return {"ratio": value, "target": floor, "met": value >= floor}


def targets(rows: list[dict]) -> dict:
    """Every target, with the measured ratio and whether it is met (None: a row it needs is missing)."""
    rows = [r for r in rows if "tokens_per_s" in r]
    speed = {(r["setting"], r["method"], r["batch"]): r["tokens_per_s"] for r in rows}
    greedy = sorted({r["batch"] for r in rows if r["setting"] == "greedy"})
    out = {}
    if greedy:
        top, low = greedy[-1], greedy[0]
        for name, over, floor in (("steered", "plain", 0.95), ("collect", "plain", 0.85),
                                  ("steered", "engine", 0.95), ("steered_compiled", "engine_compiled", 0.95)):
            ratios = {b: ratio(speed, ("greedy", name, b), ("greedy", over, b), floor)["ratio"] for b in greedy}
            measured = [v for v in ratios.values() if v is not None]
            out[f"{name}_vs_{over}"] = {"ratios": ratios, "target": floor,
                                        "met": min(measured) >= floor if measured else None}
        out["steered_scaling"] = {**ratio(speed, ("greedy", "steered", top), ("greedy", "steered", low), 20.0),
                                  "batches": [low, top]}
        out["steered_vs_cb"] = {**ratio(speed, ("greedy", "steered", top), ("greedy", "cb", top), 0.9), "batch": top}
        out["steered_compiled_vs_cb_graphs"] = {**ratio(speed, ("greedy", "steered_compiled", top),
                                                        ("greedy", "cb_graphs", top), 0.9), "batch": top}
        floor_row = [r for r in rows if (r["setting"], r["method"], r["batch"]) == ("greedy", "steered_compiled", top)]
        share = floor_row[0]["floor_fraction"] if floor_row else None
        out["steered_compiled_floor_share"] = {"ratio": share, "batch": top, "target": 0.3,
                                               "met": share >= 0.3 if share is not None else None}
    for setting, floor in (("sampled", 0.95), ("ragged", 1.2), ("long", 1.0)):
        batches = {r["batch"] for r in rows if r["setting"] == setting}
        if batches:
            (batch,) = batches
            out[f"{setting}_steered_vs_plain"] = {**ratio(speed, (setting, "steered", batch), (setting, "plain", batch),
                                                          floor), "batch": batch}
    return out


def format_table(meta: dict, rows: list[dict]) -> str:
    lines = [f"{meta['device']} | torch {meta['torch']} | transformers {meta['transformers']} | "
             f"CUDA {meta['cuda']} | {meta['shape']} {meta['dtype']}, {meta['new_tokens']} new tokens, "
             f"boundary every {meta['boundary_every']}",
             f"weights {meta['weight_bytes'] / 2**30:.2f} GiB, "
             f"copy bandwidth {meta['copy_bandwidth_GBps']:.0f} GB/s, "
             f"floor {meta['floor_step_ms']:.2f} ms a step for the weights alone, plus "
             f"{meta['kv_bytes_per_token'] / 1024:.0f} KiB a cached token "
             f"(long rows: {meta['long_context']} tokens)",
             f"{'setting':<8} {'method':<17} {'batch':>5} {'tok/s':>10} {'ms/step':>8} {'x plain':>8} {'of floor':>8} "
             f"{'compile s':>9}"]
    plain = {(r["setting"], r["batch"]): r["tokens_per_s"] for r in rows
             if r["method"] == "plain" and "tokens_per_s" in r}
    for r in rows:
        if "error" in r:
            lines.append(f"{r['setting']:<8} {r['method']:<17} {r['batch']:>5} not measured: {r['error']}")
            continue
        base = plain.get((r["setting"], r["batch"]))
        versus = f"{r['tokens_per_s'] / base:>8.2f}" if base else f"{'-':>8}"
        compiled = f"{r['compile_s']:>9.1f}" if r.get("compile_s") else f"{'':>9}"
        lines.append(f"{r['setting']:<8} {r['method']:<17} {r['batch']:>5} {r['tokens_per_s']:>10.1f} "
                     f"{r['step_ms']:>8.2f} {versus} {100 * r['floor_fraction']:>7.1f}% {compiled}")
    for name, t in targets(rows).items():
        shown = t.get("ratios", t.get("ratio"))
        if isinstance(shown, dict):
            shown = ", ".join(f"b{b} {v:.2f}" if v is not None else f"b{b} -" for b, v in shown.items())
        else:
            shown = f"{shown:.2f}x" if shown is not None else "not measured"
        verdict = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        lines.append(f"target {name}: {shown} (>= {t['target']}) {verdict}")
    return "\n".join(lines)


def read_rows(path: str) -> tuple[dict, list[dict]]:
    """The last meta line and every row of a results file (JSON lines)."""
    meta, rows = {}, []
    with open(path) as handle:
        for line in handle:
            item = json.loads(line)
            if "meta" in item:
                meta = item["meta"]
            else:
                rows.append(item)
    return meta, rows


def write_report(stem: str) -> str:
    """The table and the JSON of everything `stem`.jsonl holds so far."""
    meta, rows = read_rows(f"{stem}.jsonl")
    table = format_table(meta, rows)
    with open(f"{stem}.json", "w") as handle:
        json.dump({**meta, "rows": rows, "targets": targets(rows)}, handle, indent=2)
    with open(f"{stem}.txt", "w") as handle:
        handle.write(table + "\n")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rehearse", action="store_true", help="CPU, tiny shape, 16 tokens, batches 1,4")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--shape", choices=SHAPES, default="r1-1.5b")
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--new_tokens", type=int, default=512)
    parser.add_argument("--boundary_every", type=int, default=32)
    parser.add_argument("--long_context", type=int, default=8192, help="prompt tokens of the long-context rows")
    parser.add_argument("--long_tokens", type=int, default=64, help="new tokens of the long-context rows")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help="which parts to run, in order; each appends its rows to the results as it goes")
    parser.add_argument("--fresh", action="store_true", help="start the results file afresh")
    parser.add_argument("--report", action="store_true", help="only write the table of the results so far")
    parser.add_argument("--compile_backend", default="inductor",
                        help="torch.compile backend of the compiled rows (the rehearsal traces only: aot_eager)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    if args.rehearse:
        args.device, args.dtype, args.shape, args.batches, args.new_tokens, args.boundary_every = (
            "cpu", "float32", "rehearsal", "1,4", 16, 4)
        args.long_context, args.long_tokens, args.compile_backend = 256, 8, "aot_eager"
    elif not torch.cuda.is_available() and args.device.startswith("cuda"):
        parser.error("no CUDA device here: run with --rehearse to check the script on the CPU")
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"--parts: unknown {', '.join(sorted(unknown))} (choose from {', '.join(PARTS)})")
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"gpu_{'rehearsal' if args.rehearse else args.shape}")
    if args.report:
        print(write_report(stem))
        return
    bench = Bench(args)
    with open(f"{stem}.jsonl", "w" if args.fresh else "a") as results:
        def emit(row: dict) -> None:  # every row is on disk the moment it is measured
            results.write(json.dumps(row) + "\n")
            results.flush()
            print(json.dumps(row), flush=True)

        results.write(json.dumps({"meta": bench.meta()}) + "\n")
        for part in args.parts.split(","):
            with bench.entered:
                PARTS[part](bench, emit)
            print(f"part {part} done", flush=True)
    print(write_report(stem))
    print(f"wrote {stem}.jsonl, {stem}.json and {stem}.txt")


if __name__ == "__main__":
    main()
