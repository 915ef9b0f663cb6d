"""The steered inference scripts (docs/method.md §8). Both top-level scripts call `main` here; the Qwen3 one
only changes defaults: injection at the block's output, repetition penalty 1.18, Qwen3-14B constants."""

from __future__ import annotations

import argparse
import os

from ..calibration import CONSTANT_NAMES, resolve
from ..errors import UsageError
from ..examples import load_examples
from ..files.names import steered_stem
from ..files.shards import check_cards
from ..models import model_basename, model_shape, resolve_model_path
from ..runs import SteerJob, run_steering, steering_card
from ..steering import MODES, load_vector, site_index
from .flags import add_model_flags, add_run_flags

DEFAULTS = {
    "default": dict(inject_at="input", repetition_penalty=1.0, fallback_model=None),
    "qwen3": dict(inject_at="output", repetition_penalty=1.18, fallback_model="Qwen3-14B"),
}


def build_parser(variant: str, description: str) -> argparse.ArgumentParser:
    defaults = DEFAULTS[variant]
    parser = argparse.ArgumentParser(description=description)
    add_model_flags(parser)
    add_run_flags(parser)
    parser.add_argument("--steer_vector_path", default=None, help="plain float tensor [hidden size] (.pt)")
    parser.add_argument("--steer_layer", type=int, default=None,
                        help="block index L (default: from the calibration file or the released table)")
    parser.add_argument("--steer_coef", type=float, default=-1.0,
                        help="initial coefficient (dynamic) or the constant one (static)")
    parser.add_argument("--steer_mode", choices=MODES, default="dynamic",
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


def make_job(args: argparse.Namespace) -> SteerJob:
    if args.temperature < 0:
        raise UsageError(f"--temperature must be >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise UsageError(f"--top_p must be in (0, 1], got {args.top_p}")
    load_examples(args.dataset_dir, args.dataset, args.limit)
    model = resolve_model_path(args.model_name_or_path)
    name = model_basename(args.model_name_or_path)
    overrides = {n: getattr(args, f"dyn_{n}") for n in CONSTANT_NAMES}
    constants, table_layer, source = resolve(name, args.steer_vector_path, overrides,
                                             DEFAULTS[args.variant]["fallback_model"])
    layer = args.steer_layer if args.steer_layer is not None else table_layer
    if args.steer_mode != "off":
        if args.steer_vector_path is None:
            raise UsageError(f"--steer_vector_path is required with --steer_mode {args.steer_mode}")
        hidden_size, blocks = model_shape(model, args.trust_remote_code)
        load_vector(args.steer_vector_path, hidden_size)
        if layer is None:
            raise UsageError("--steer_layer is required: no calibration file beside the vector and no released "
                             "constants for this model")
        site_index(blocks + 1, layer, args.inject_at)
        print(f"steering: mode {args.steer_mode}, layer {layer} ({args.inject_at}), constants from {source}")
        if args.steer_mode == "dynamic":
            from ..control import ControlFunction

            try:
                ControlFunction(**constants)
            except ValueError as err:
                raise UsageError(f"the control constants from {source} are unusable: {err}") from None
            print("  " + ", ".join(f"{k}={v:g}" for k, v in constants.items()))
    base = steered_stem(args.temperature, args.max_generated_tokens, args.steer_mode, args.steer_coef, args.run_id)
    return SteerJob(model, name, args.dataset_dir, args.dataset, os.path.join(args.output_path, name, args.dataset),
                    base, args.max_generated_tokens, args.batch_size, args.limit, args.dtype, args.trust_remote_code,
                    args.steer_vector_path, layer if layer is not None else -1, args.inject_at, args.steer_mode,
                    args.steer_coef, constants, args.temperature, args.top_p, args.repetition_penalty, args.seed,
                    fit_batch=args.fit_batch)


def main(argv: list[str] | None, variant: str, description: str) -> int:
    args = build_parser(variant, description).parse_args(argv)
    job = make_job(args)
    card = steering_card(job, args.num_gpus)
    check_cards(job.out_dir, job.base, card, warn=False)  # a resume made differently stops here, before any file
    os.makedirs(job.out_dir, exist_ok=True)
    if job.mode == "dynamic":
        from ..control import ControlFunction
        from ..reports.plots import plot_control_surface

        surface = plot_control_surface(ControlFunction(**job.constants), os.path.join(job.out_dir, "control_surface.png"))
        print(f"control surface: {surface}")
    run_steering(job, args.num_gpus, card)
    print(f"records: {job.out_dir}/{job.base}.shard*.jsonl")
    return 0
