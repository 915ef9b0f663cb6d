"""In-flight batched decoding (docs/method.md §14): the one loop under the collection and steered runs.

`width` rows decode together. When a row ends (EOS or its token limit) its result is handed out at
once, and the next example of the queue is prefilled and takes its place at the next step, so the
batch stays full until the queue runs dry (then it shrinks). A static batch instead keeps
computing its finished rows as padding until its longest row ends: on reasoning traces, where one
row of a batch often runs to the limit, that is most of the work.

One step: a forward of the live rows' last tokens (the model's own forward, keys and values written
in place into preallocated slots: `cache.py`), the logits processors, the next tokens, the step
tracker and the plugins (steering, capture: `plugins.py`), then one transfer of a few numbers per
row to the host, which decides which rows ended. Every piece of per-row state is a row of a tensor (or a host-side
`_Slot`) and a new example gets a freshly constructed row, so nothing carries over from the
example that held the slot before. The prompt of an example is the caller's policy (`prompt`).
"""

from __future__ import annotations

import inspect
import math
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from transformers import LogitsProcessor

from ..examples import Example
from . import cache as kvcache
from .forward import DecodeForward
from .plugins import StepPlugin
from .row_state import RowState
from .sampling import GREEDY, ReleasedTopP, Sampling, draw, draw_keys, keyed_uniform, left_pad, penalise_repeats
from .steps import CAPTURE, StepTracker, TokenTable, token_flags

PromptFn = Callable[[Example], list[int]]
PREFILL_TOKENS = 4096  # padded prompt tokens admitted together, at most (one longer prompt goes alone)
PREFILL_CHUNK = 256    # padded prompt tokens one prefill forward computes (at least one column a row)


@dataclass
class Finished:
    """One example's result, handed out as soon as its row ends."""

    example: Example
    prompt: list[int]
    tokens: list[int]                  # generated ids, the EOS included when the row stopped on it
    logprobs: list[float]              # max log-softmax of the raw logits that chose each token
    hit_eos: bool
    values: dict[str, list[Any]]       # what each plugin kept for this row, in order, by plugin name
    flags: list[int] = field(default_factory=list)  # the tracker's facts per token (steps.token_flags)


@dataclass
class _Slot:
    """Host-side bookkeeping of one live row."""

    example: Example
    prompt: list[int]
    length: int                        # this row's tokens in the cache
    values: dict[str, list[Any]]
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)
    seq: int = 0                       # admission order: results ending at the same step leave in this order
    starts_step: bool = False          # the token fed next starts a step
    draining: bool = False             # ended at the limit; fed once more only for the plugins' sake

    def result(self, hit_eos: bool) -> Finished:
        return Finished(self.example, self.prompt, self.tokens, self.logprobs, hit_eos, self.values, self.flags)


class EngineRows(RowState):
    """The engine's own per-row tensors, kept and extended with every other piece of row state."""

    ROW_FIELDS = ("lengths", "next_tokens", "example_idx", "generated", "draw_keys")

    def __init__(self, lengths: Sequence[int], example_idx: Sequence[int], seed: int, device: torch.device):
        self.lengths = torch.tensor(list(lengths), dtype=torch.long, device=device)   # tokens in the cache
        self.next_tokens = torch.zeros(len(lengths), dtype=torch.long, device=device)  # the token fed next
        self.example_idx = torch.tensor(list(example_idx), dtype=torch.long, device=device)
        self.generated = torch.zeros(len(lengths), dtype=torch.long, device=device)    # tokens chosen so far
        self.draw_keys = draw_keys(seed, self.example_idx)  # the sampler's per-example half of its hash


def prefill_groups(lengths: list[int], budget: int) -> list[list[int]]:
    """Consecutive groups of prompts prefilled together, each at most `budget` padded tokens (rows x
    longest prompt) unless one prompt alone is longer: a prefill's activations scale with its
    padded tokens, and 16 prompts of 8k prefilled at once would hold more memory than their whole cache."""
    groups: list[list[int]] = []
    longest = 0
    for i, length in enumerate(lengths):
        if groups and (len(groups[-1]) + 1) * max(longest, length) <= budget:
            groups[-1].append(i)
            longest = max(longest, length)
        else:
            groups.append([i])
            longest = length
    return groups


def pad_left(tensor: torch.Tensor, columns: int, value: int) -> torch.Tensor:
    """`columns` new leading columns filled with `value` (the token history is left-aligned)."""
    if columns <= 0:
        return tensor
    return torch.cat([tensor.new_full((tensor.shape[0], columns), value), tensor], dim=1)


@dataclass
class RowContext:
    """What a row-aware processor sees besides the scores: the example each row holds and how many
    tokens that row has generated before the one being chosen."""

    example_idx: torch.Tensor
    generated: torch.Tensor


class RowAwareProcessor(LogitsProcessor):
    """A logits processor that needs to know which example each row is (rows come and go under
    in-flight batching, so a call counter cannot tell)."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor,
                 rows: RowContext | None = None) -> torch.FloatTensor:
        raise NotImplementedError


class Engine:
    """Decode a queue of examples `width` at a time in flight; `run` yields each `Finished` result.

    `prompt(example)` gives an example's prompt ids. `plugins` (steering.Steerer,
    capture.HiddenCapture, ...) ride along; without any this is plain batched decoding with
    confidences. Their hooks are registered while the engine is entered (`with engine:`).
    Processors get HF's `(input_ids, scores)`, input_ids being each row's history left-padded.
    """

    def __init__(self, model, tokenizer, table: TokenTable, *, prompt: PromptFn, width: int, max_new_tokens: int,
                 processors: Sequence[LogitsProcessor] = (), sampling: Sampling = GREEDY,
                 plugins: Sequence[StepPlugin] = ()):
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        self.model = model
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.plugins = list(plugins)
        self.final_feed = any(plugin.final_feed for plugin in self.plugins)
        self.record_fields = {plugin.name for plugin in self.plugins if plugin.in_record}
        self._hooks: ExitStack | None = None
        self.device = next(model.parameters()).device
        self.attention = kvcache.attention_kind(model)
        kvcache.check_full_attention(model)
        self.table = table.to(self.device)
        self.width = max(1, int(width))
        self.max_new_tokens = max_new_tokens
        self.processors = list(processors)
        self.shaping = ReleasedTopP(sampling.temperature, sampling.top_p) if sampling.sampled else None
        self.penalty = sampling.repetition_penalty
        self.seed = sampling.seed
        self.eos = set(table.eos_ids)
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (table.eos_ids[0] if table.eos_ids else 0)
        params = inspect.signature(model.forward).parameters
        self._cache_kw = kvcache.cache_keyword(model)
        self.forward = DecodeForward(model, self._cache_kw, self.attention)
        self._prefill_kw = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        self.steps = 0  # token-choosing steps over the engine's life (occupancy = tokens / (width x steps))
        self._clear()

    def compile(self, backend: str = "inductor") -> "Engine":
        """Decode with a compiled step (`--compile`; `forward.py`): same tokens, compiled on first use
        of each shape family. Returns the engine, so `with engine_for(...).compile() as engine:`."""
        self.forward = DecodeForward(self.model, self._cache_kw, self.attention, compile=True, backend=backend)
        return self

    @property
    def compiled(self) -> bool:
        return self.forward.compiled

    # ---- state ------------------------------------------------------------------------------

    def _clear(self) -> None:
        self.slots: list[_Slot] = []
        self.admitted = 0
        self.cache = kvcache.SlotCache(self.width)
        self.history = torch.zeros(0, 0, dtype=torch.long, device=self.device)  # each row's ids, right-aligned
        self.rows = EngineRows([], [], self.seed, self.device)
        self.tracker = StepTracker(self.table, [], self.device)
        self.seen: torch.Tensor | None = None  # [rows, V] tokens each row has seen (repetition penalty)

    def _drop(self, dead: list[int]) -> list[int]:
        """Free the rows at `dead`: the last live rows move into their slots (one row copied per
        freed slot, nothing else moves). Returns the new order, as old row numbers."""
        live = len(self.slots) - len(dead)
        gone = set(dead)
        holes = [i for i in range(live) if i in gone]
        tail = [i for i in range(live, len(self.slots)) if i not in gone]  # live rows past the new end
        order = list(range(live))
        for hole, source in zip(holes, tail):
            order[hole] = source
        self.cache.fill(list(zip(tail, holes)), live, [self.slots[i].length for i in tail])
        self._keep(order)
        return order

    def _keep(self, keep: list[int]) -> None:
        """Keep these rows, in this order, in every piece of per-row state but the cache."""
        self.slots = [self.slots[i] for i in keep]
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.history = self.history.index_select(0, index) if keep else self.history.new_zeros(0, 0)
        self.rows.keep(index)
        self.tracker.keep(index)
        if self.seen is not None:
            self.seen = self.seen.index_select(0, index)
        for plugin in self.plugins:
            plugin.keep(index)

    def _trim(self) -> None:
        """Drop the leading history columns that no live row uses any more."""
        excess = self.history.shape[1] - max((slot.length for slot in self.slots), default=0)
        if self.slots and excess > 0:
            self.history = self.history[:, excess:]

    # ---- the loop ---------------------------------------------------------------------------

    def __enter__(self) -> "Engine":
        """Register every plugin's model hooks until the `with` block ends."""
        with ExitStack() as stack:
            for plugin in self.plugins:
                stack.enter_context(plugin.hooks())
            self._hooks = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        hooks, self._hooks = self._hooks, None
        if hooks is not None:
            hooks.close()

    def run(self, examples: Iterable[Example]) -> Iterator[Finished]:
        """Yield every example's result as soon as it ends (not in input order)."""
        if self.plugins and self._hooks is None:
            raise RuntimeError("the engine's plugins have no hooks registered: run it inside `with engine:`")
        queue = deque(examples)
        self._clear()
        while queue or self.slots:
            yield from self._step(queue)

    @torch.inference_mode()
    def _step(self, queue: deque) -> list[Finished]:
        done: list[Finished] = []
        logits = None
        if self.slots:
            logits = self._forward()
            dead = [i for i, slot in enumerate(self.slots) if slot.draining]
            if dead:
                drained = sorted((slot for slot in self.slots if slot.draining), key=lambda slot: slot.seq)
                done += [slot.result(hit_eos=False) for slot in drained]
                logits = logits[self._drop(dead)]
        fresh = [queue.popleft() for _ in range(min(self.width - len(self.slots), len(queue)))]
        prompts = [self.prompt(ex) for ex in fresh]
        for group in prefill_groups([len(p) for p in prompts], PREFILL_TOKENS):
            first = self._admit([fresh[i] for i in group], [prompts[i] for i in group])
            logits = first if logits is None else torch.cat([logits, first], dim=0)
        if self.slots:
            done += self._choose(logits)
        return done

    def _forward(self) -> torch.Tensor:
        """One decoding step of every live row; returns the logits of the next token.

        The forward's shapes are fixed between bucket crossings: it reads a bucket of columns
        (`cache.column_bucket`) and, when compiled, runs a bucket of rows (`cache.row_bucket`), the
        padding rows fed a pad token at column 0 of a free slot."""
        rows, live = self.rows, len(self.slots)
        padded = kvcache.row_bucket(live, self.width) if self.compiled else live
        feed, positions = rows.next_tokens[:, None], rows.lengths
        if padded > live:
            feed = torch.cat([feed, feed.new_full((padded - live, 1), self.pad_id)])
            positions = torch.cat([positions, positions.new_zeros(padded - live)])
        columns = kvcache.column_bucket(max(slot.length for slot in self.slots) + 1, self.cache.capacity)
        self.history = torch.cat([self.history, feed[:live]], dim=1)
        starting = [i for i, slot in enumerate(self.slots) if slot.starts_step]
        for plugin in self.plugins:
            plugin.before_forward(self.tracker, starting, padded)
        self.cache.begin_step(positions, columns)
        try:
            logits = self.forward(feed, positions, columns, self.cache)
        finally:
            self.cache.end_step()
            kept = [(plugin.name, plugin.after_forward()) for plugin in self.plugins]
        for name, pairs in kept:
            for i, value in pairs:
                self.slots[i].values[name].append(value)
        rows.lengths = rows.lengths + 1
        for slot in self.slots:
            slot.length += 1
        return logits[:live]

    def _admit(self, examples: list[Example], prompts: list[list[int]]) -> torch.Tensor:
        """Prefill new examples (left-padded together) straight into free slots, in chunks of at most
        `PREFILL_CHUNK` padded tokens, append their rows with fresh state, and return the logits of
        their first token."""
        ids, mask = left_pad(prompts, self.pad_id, self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        lengths = [len(p) for p in prompts]
        admission = self.cache.admission(lengths, ids.shape[1], capacity=max(lengths) + self.max_new_tokens)
        chunk = max(1, PREFILL_CHUNK // len(prompts))  # padded columns a forward prefills
        for start in range(0, ids.shape[1], chunk):
            end = start + chunk
            out = self.model(input_ids=ids[:, start:end], attention_mask=mask[:, :end],
                             position_ids=positions[:, start:end], use_cache=True,
                             **{self._cache_kw: admission.at(start)}, **self._prefill_kw)
        admission.close()
        self.forward.mark_cache(self.cache.keys + self.cache.values)
        logits = out.logits[:, -1, :]
        total = max(self.history.shape[1], ids.shape[1])
        self.history = torch.cat([pad_left(self.history, total - self.history.shape[1], self.pad_id),
                                  pad_left(ids, total - ids.shape[1], self.pad_id)], dim=0)
        self.rows.extend(EngineRows(lengths, [ex.idx for ex in examples], self.seed, self.device))
        self.tracker.extend(StepTracker(self.table, prompts, self.device))
        for plugin in self.plugins:
            plugin.admit(len(prompts))
        if self.penalty != 1.0:
            seen = torch.zeros(len(prompts), logits.shape[-1], dtype=torch.bool, device=self.device)
            for row, prompt in enumerate(prompts):
                seen[row, torch.tensor(prompt, dtype=torch.long, device=self.device)] = True
            self.seen = seen if self.seen is None else torch.cat([self.seen, seen], dim=0)
        for ex, prompt in zip(examples, prompts):
            self.slots.append(_Slot(ex, prompt, len(prompt), {p.name: [] for p in self.plugins}, seq=self.admitted))
            self.admitted += 1
        return logits

    def _rows(self) -> RowContext:
        return RowContext(self.rows.example_idx, self.rows.generated)

    def _choose(self, logits: torch.Tensor) -> list[Finished]:
        """Next token of every live row, the trackers advanced on it, and the one transfer."""
        self.steps += 1
        scores = logits.float().clone()
        logp = torch.log_softmax(scores, dim=-1).amax(dim=-1)  # confidence: raw logits, before any shaping
        rows = None
        for processor in self.processors:
            if isinstance(processor, RowAwareProcessor):
                rows = rows or self._rows()
                scores = processor(self.history, scores, rows)
            else:
                scores = processor(self.history, scores)
        if self.seen is not None:
            scores = penalise_repeats(scores, self.seen, self.penalty)
        if self.shaping is not None:
            probs = torch.softmax(self.shaping(self.history, scores), dim=-1)
            tokens = draw(probs, keyed_uniform(self.rows.draw_keys, self.rows.generated))
        else:
            tokens = scores.argmax(dim=-1)
        if self.seen is not None:
            self.seen[torch.arange(len(tokens), device=self.device), tokens] = True
        self.tracker.advance(tokens)
        columns = [tokens.double(), logp.double(), token_flags(self.tracker).double()]
        named = []  # (column, plugin name) of the plugins that put a number per row into the transfer
        for plugin in self.plugins:
            column = plugin.after_choose(self.tracker, logp.exp())
            if column is not None:
                named.append((len(columns), plugin.name))
                columns.append(column.double())
        packet = torch.stack(columns, dim=1).tolist()  # the step's one device-to-host transfer
        self.rows.next_tokens = tokens
        self.rows.generated = self.rows.generated + 1

        ended, dead = [], []
        for i, (slot, row) in enumerate(zip(self.slots, packet)):
            token, flags = int(row[0]), int(row[2])
            slot.tokens.append(token)
            slot.logprobs.append(row[1])
            slot.flags.append(flags)
            starts_step = bool(flags & CAPTURE)
            hit_eos = token in self.eos
            if hit_eos or len(slot.tokens) >= self.max_new_tokens:
                if self.final_feed and not hit_eos and starts_step:
                    slot.draining = slot.starts_step = True  # its last token starts a step: one more feed
                else:
                    ended.append((slot, hit_eos))
                    dead.append(i)
                continue
            slot.starts_step = starts_step
            for column, name in named:
                if not math.isnan(row[column]):
                    slot.values[name].append(row[column])  # e.g. a coefficient, applied when this token is fed
        if dead:
            self._drop(dead)
        self._trim()
        return [slot.result(hit_eos) for slot, hit_eos in sorted(ended, key=lambda pair: pair[0].seq)]
