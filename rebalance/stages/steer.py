"""Stage 4, steered inference (`transformer_inference_steer_dp.py` and its `_qwen3` twin): the vector
added at every reasoning-step boundary, scaled by the control function's coefficient (`dynamic`,
ReBalance), by a constant (`static`), or not at all (`off`, the baseline) (docs/method.md §8).

The vector, the site it is added at and the control function are built and checked once, before
any worker starts; the job carries them to every rank. The Qwen3 script only changes defaults:
injection at the block's output, repetition penalty 1.18, Qwen3-14B constants.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from ..calibration import CONSTANT_NAMES, resolve
from ..control import ControlFunction
from ..decoding.decode import engine_for
from ..decoding.records import make_table
from ..decoding.sampling import SAMPLER, Sampling
from ..decoding.steering import MODES, Mode, SteeringSetup, load_vector, site_index
from ..errors import UsageError, cli_entry
from ..examples import load_examples
from ..files.cards import RunCard, sha256_file
from ..files.names import shard_path, steered_stem
from ..files.shards import compare_cards
from ..models import load_model, model_shape
from ..parallel import Rank, run_data_parallel
from .flags import add_model_flags, add_run_flags
from .shared import RunJob, claim, plan_memory, run_card, run_rank, target_fields

VARIANTS = {
    "default": dict(inject_at="input", repetition_penalty=1.0, fallback_model=None),
    "qwen3": dict(inject_at="output", repetition_penalty=1.18, fallback_model="Qwen3-14B"),
}


@dataclass(frozen=True)
class SteerJob(RunJob):
    setup: SteeringSetup
    sampling: Sampling
    vector_path: str | None
    steer_layer: int      # -1 when the mode is off
    inject_at: str
    constants: dict       # the control function's, wherever they came from

    @property
    def mode(self) -> Mode:
        return self.setup.mode


def build_parser(variant: str, description: str) -> argparse.ArgumentParser:
    defaults = VARIANTS[variant]
    parser = argparse.ArgumentParser(description=description)
    add_model_flags(parser)
    add_run_flags(parser)
    parser.add_argument("--steer_vector_path", default=None, help="plain float tensor [hidden size] (.pt)")
    parser.add_argument("--steer_layer", type=int, default=None,
                        help="block index L (default: from the calibration file or the released table)")
    parser.add_argument("--steer_coef", type=float, default=-1.0,
                        help="initial coefficient (dynamic) or the constant one (static)")
    parser.add_argument("--steer_mode", choices=MODES, default=Mode.DYNAMIC.value,
                        help="dynamic: ReBalance; static: steer_coef at every boundary; off: the unsteered baseline")
    parser.add_argument("--inject_at", choices=("input", "output"), default=defaults["inject_at"],
                        help="add the vector to the input of block L (HF hidden_states[L]) or to its output")
    parser.add_argument("--repetition_penalty", type=float, default=defaults["repetition_penalty"])
    for name in CONSTANT_NAMES:
        parser.add_argument(f"--dyn_{name}", type=float, default=None, help=f"control constant {name}")
    parser.add_argument("--temperature", type=float, default=0.7, help="0 = greedy")
    parser.add_argument("--top_p", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--run_id", default="",
                        help="prefix of the output file name (the name already tells modes and static coefficients "
                             "apart; a run id keeps runs apart that differ otherwise, e.g. in seed or vector)")
    parser.set_defaults(variant=variant)
    return parser


def sampling_of(args: argparse.Namespace) -> Sampling:
    if args.temperature < 0:
        raise UsageError(f"--temperature must be >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise UsageError(f"--top_p must be in (0, 1], got {args.top_p}")
    return Sampling(args.temperature, args.top_p, args.repetition_penalty, args.seed)


def steering_setup(args: argparse.Namespace, model: str, mode: Mode, constants: dict, layer: int | None,
                   source: str) -> SteeringSetup:
    """The vector, its site and the control function, each checked against the model (once)."""
    if mode == Mode.OFF:
        return SteeringSetup(None, -1, mode, args.steer_coef, None)
    if args.steer_vector_path is None:
        raise UsageError(f"--steer_vector_path is required with --steer_mode {mode}")
    hidden_size, blocks = model_shape(model, args.trust_remote_code)
    vector = load_vector(args.steer_vector_path, hidden_size)
    if layer is None:
        raise UsageError("--steer_layer is required: no calibration file beside the vector and no released "
                         "constants for this model")
    site = site_index(blocks + 1, layer, args.inject_at)
    print(f"steering: mode {mode}, layer {layer} ({args.inject_at}), constants from {source}")
    control = None
    if mode == Mode.DYNAMIC:
        try:
            control = ControlFunction(**constants)
        except ValueError as err:
            raise UsageError(f"the control constants from {source} are unusable: {err}") from None
        print("  " + ", ".join(f"{k}={v:g}" for k, v in constants.items()))
    return SteeringSetup(vector, site, mode, args.steer_coef, control)


def make_job(args: argparse.Namespace) -> SteerJob:
    sampling = sampling_of(args)
    mode = Mode(args.steer_mode)
    base = steered_stem(args.temperature, args.max_generated_tokens, mode, args.steer_coef, args.run_id)
    fields = target_fields(args, base)
    overrides = {n: getattr(args, f"dyn_{n}") for n in CONSTANT_NAMES}
    constants, table_layer, source = resolve(fields["model_name"], args.steer_vector_path, overrides,
                                             VARIANTS[args.variant]["fallback_model"])
    layer = args.steer_layer if args.steer_layer is not None else table_layer
    setup = steering_setup(args, fields["model"], mode, constants, layer, source)
    return SteerJob(**fields, setup=setup, sampling=sampling, vector_path=args.steer_vector_path,
                    steer_layer=layer if layer is not None else -1, inject_at=args.inject_at, constants=constants)


def steer_rank(rank: Rank, job: SteerJob) -> None:
    examples = load_examples(job.dataset_dir, job.dataset, job.limit)
    model, tokenizer = load_model(job.model, rank.device, job.dtype, job.trust_remote_code)
    engine = engine_for(model, tokenizer, make_table(model, tokenizer), width=job.batch_size,
                        max_new_tokens=job.max_new_tokens, steering=job.setup, sampling=job.sampling)
    if job.compile:
        engine.compile()
    run_rank(rank, examples, shard_path(job.out_dir, job.base, rank.rank), engine, steered=True,
             desc=f"{job.mode} {job.dataset}")


def compared_fields(job: SteerJob) -> dict:
    """What a steered run compares beside the common fields: only what its mode uses (a baseline is
    not refused for another vector, a greedy run not for another seed)."""
    steered, dynamic, sampled = job.mode != Mode.OFF, job.mode == Mode.DYNAMIC, job.sampling.sampled
    return {"kind": "steered", "mode": job.mode,
            "vector_sha256": sha256_file(job.vector_path) if steered else None,
            "steer_layer": job.steer_layer if steered else None, "inject_at": job.inject_at if steered else None,
            "constants": dict(job.constants) if dynamic else None, "coef": job.setup.coef if steered else None,
            "temperature": job.sampling.temperature, "top_p": job.sampling.top_p if sampled else None,
            "seed": job.sampling.seed if sampled else None, "sampler": SAMPLER if sampled else None,
            "repetition_penalty": job.sampling.repetition_penalty}


def steering_card(job: SteerJob) -> RunCard:
    return run_card(job, compared_fields(job), {"vector_path": job.vector_path and os.path.abspath(job.vector_path)})


def run(job: SteerJob) -> None:
    """Refuse a resume made differently (before any file is written), draw the control surface of a
    dynamic run, then decode every rank's examples."""
    card = steering_card(job)
    compare_cards(job.out_dir, job.base, card, warn=False)
    os.makedirs(job.out_dir, exist_ok=True)
    if job.mode == Mode.DYNAMIC:
        from ..reports.plots import plot_control_surface

        surface = plot_control_surface(job.setup.control, os.path.join(job.out_dir, "control_surface.png"))
        print(f"control surface: {surface}")
    run_data_parallel(steer_rank, plan_memory(job), job.num_gpus, claim(job, card))


@cli_entry
def main(argv: list[str] | None = None, variant: str = "default", description: str = __doc__) -> int:
    job = make_job(build_parser(variant, description).parse_args(argv))
    run(job)
    print(f"records: {job.out_dir}/{job.base}.shard*.jsonl")
    return 0
