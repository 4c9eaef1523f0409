"""One batched decoding step's per-row work beyond the shared sampling settings (engine/infer/chat.py's own
loop calls it): presence and frequency penalties over each row's own answer, a JSON grammar
(engine/infer/constrain.py), a seeded generator per row, and the model's own log-probabilities of the
chosen tokens and, for completions with echo, of the prompt's.

    pytest tests/test_endpoint.py     # what clients see of it through `studio serve`
"""

from __future__ import annotations

from engine.infer.batching import Request, RowStreamer, TokenLogprob


class Decoding:
    """What a batch's rows ask of each decoding step beyond the shared sampling settings: presence and
    frequency penalties over each row's own answer, a grammar (JSON mode), a seeded generator, and the
    model's own log-probabilities of what was chosen."""

    def __init__(self, requests: list[Request], prompts: list[list[int]], torch, vocab_size: int, tokenizer,
                 ends: list[int], device):
        self.torch, self.requests, self.prompts, self.device = torch, requests, prompts, device
        self.answers: list[list[int]] = [[] for _ in requests]
        first = requests[0]
        self.presence, self.frequency = first.presence_penalty, first.frequency_penalty
        self.counts = None
        if self.presence or self.frequency:
            self.counts = torch.zeros((len(requests), vocab_size), device=device)
        self.enforcers = {r: req.constraint.enforcer(tokenizer, ends) for r, req in enumerate(requests)
                          if req.constraint is not None}
        self.generators = {r: torch.Generator(device=device).manual_seed(int(req.seed))
                           for r, req in enumerate(requests) if req.seed is not None}
        self.top = max((req.logprobs or 0 for req in requests), default=0)

    def penalise(self, alive: list[int], scores):
        if self.counts is None:
            return scores
        counts = self.counts[alive][:, :scores.shape[-1]]
        return scores - counts * self.frequency - (counts > 0).to(scores.dtype) * self.presence

    def constrain(self, alive: list[int], scores):
        if not self.enforcers:
            return scores
        scores = scores.clone()  # the raw logits stay as they are, for the log-probabilities
        for j, r in enumerate(alive):
            if r in self.enforcers:
                allowed = self.enforcers[r].allowed(self.prompts[r] + self.answers[r])
                keep = self.torch.full_like(scores[j], float("-inf"))
                keep[allowed] = 0.0
                scores[j] = scores[j] + keep
        return scores

    def choose(self, alive: list[int], scores, sample: bool):
        torch = self.torch
        if not sample:
            return scores.argmax(dim=-1)
        probs = torch.softmax(scores, dim=-1)
        if not any(r in self.generators for r in alive):
            return torch.multinomial(probs, 1).squeeze(1)
        draws = [torch.multinomial(probs[j], 1, generator=self.generators.get(r)) for j, r in enumerate(alive)]
        return torch.cat(draws)

    def record(self, alive: list[int], raw, chosen, streamer: RowStreamer) -> None:
        """Each row's chosen token into its answer and counts, with its log-probability where asked."""
        torch = self.torch
        wanted = [j for j, r in enumerate(alive) if self.requests[r].logprobs is not None]
        if wanted:
            logps = torch.log_softmax(raw[wanted], dim=-1)
            top_v, top_i = logps.topk(max(1, self.top), dim=-1) if self.top else (None, None)
        for j, r in enumerate(alive):
            token = int(chosen[j])
            self.answers[r].append(token)
            if self.counts is not None:
                self.counts[r, token] += 1
        for k, j in enumerate(wanted):
            r, token = alive[j], int(chosen[j])
            n = self.requests[r].logprobs
            top = list(zip(top_i[k, :n].tolist(), top_v[k, :n].tolist())) if n else []
            streamer.logprobs[r].append(TokenLogprob(token, float(logps[k, token]), top))

    def prompt_logprobs(self, logits, ids: list[int], request: Request) -> list[TokenLogprob]:
        """Each prompt token's log-probability given the tokens before it (None for the first)."""
        torch = self.torch
        logps = torch.log_softmax(logits[:-1].float(), dim=-1)
        target = torch.tensor(ids[1:], device=logps.device)
        chosen = logps.gather(1, target[:, None])[:, 0].tolist()
        n = request.logprobs or 0
        top_v, top_i = logps.topk(n, dim=-1) if n else (None, None)
        out = [TokenLogprob(ids[0], None, [])]
        for i, token in enumerate(ids[1:]):
            top = list(zip(top_i[i].tolist(), top_v[i].tolist())) if n else []
            out.append(TokenLogprob(token, chosen[i], top))
        return out
