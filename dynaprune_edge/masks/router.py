"""The width router of a slimmable network: per sample, one branch among persistence
(nothing computed beyond the router) and the network's width levels (every region
computed), chosen under a budget given at run time.

The head reads the importance field S of the mask generator (the paper's shared
importance: generator features pooled with S as weights, their plain mean, and the mean
and peak of S) and predicts, per branch, the sample's forecast error there (its MAE in the
data's normalised units): the differences are what a wider network buys for that sample,
and on an input that does not change, persistence is predicted best, as it is. Training
fits it to the per-sample errors the sandwich step computes anyway (persistence, the
narrowest, the widest and one level between, detached).

A sample takes the branch that minimises predicted error + λ·cost (cost: the branch's
ratio to the dense model on the model's cost target, router included), among the
branches within the per-sample cap (--max-cost beyond the router's own cost, at every
run-time budget; without it, none: the price alone decides). λ is a price per unit of
cost: calibrated on held-out *training* windows, per budget on a grid (BUDGET_GRID), as
the smallest price at which their mean cost, plus a margin for windows it did not see
(MARGIN_Z standard errors of that mean), is at most that budget. A run-time budget
reads the price of the largest grid budget at or below it, so the mean cost stays at or
below what was asked (on data like the held-out windows). With one set of allowed
branches the price falls as the budget rises, and no sample's branch costs less at a
higher budget (a price of λ' < λ never picks a cheaper branch). A sample whose error the
head predicts least at persistence (an input that does not change) takes persistence at
any price: the router learns the calm case from the data, not from a rule.

Budget 1.0 is the widest level for every sample, the router not run: the dense network.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dynaprune_edge.flops import matmul_flops

BUDGET_GRID = np.round(np.arange(1, 101) / 100, 2)
"""Budgets the price is calibrated at: a run-time budget uses the largest at or below it."""
MARGIN_Z = 1.645
"""The calibrated mean cost plus this many standard errors of it (one-sided 95 %) must fit
the budget: a budget is a bound on windows the calibration did not see, not only on the
few dozen it did (on NYC bike, 58 held-out windows priced in ms: 0.30 there, 0.41 on the
validation windows at budget 0.3 without the margin)."""
HIDDEN = 32
PRICE_SEARCH_STEPS = 60  # bisection steps of the price (60 halvings of a float64 interval)


class WidthRouter(nn.Module):
    def __init__(self, feature_channels: int, levels: int, max_cost: float | None) -> None:
        super().__init__()
        self.branches = levels + 1  # persistence, then each width level, narrowest first
        self.head = nn.Sequential(
            nn.Linear(2 * feature_channels + 2, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, self.branches)
        )
        self.max_cost = 1.0 if max_cost is None else max_cost  # beyond the router's own cost
        self.register_buffer("loss_unit", torch.ones(()))  # a typical per-sample error: the head's output scale
        self.register_buffer("costs", torch.ones(self.branches))  # each branch's cost ratio, router included
        self.register_buffer("prices", torch.zeros(len(BUDGET_GRID)))  # λ at each budget of BUDGET_GRID

    def summary(self, features: Tensor, scores: Tensor) -> Tensor:
        """(B, 2F + 2): features (B, F, h, w) pooled with S (B, 1, h, w) as weights, their
        mean, and the mean and peak of S."""
        pooled = (features * scores).sum(dim=(2, 3)) / scores.sum(dim=(2, 3)).clamp_min(1e-6)
        return torch.cat([pooled, features.mean(dim=(2, 3)), scores.mean(dim=(2, 3)), scores.amax(dim=(2, 3))], dim=1)

    def predicted_losses(self, features: Tensor, logits: Tensor) -> Tensor:
        """(B, branches) predicted per-sample error of each branch, in units of
        `loss_unit` (the importance field's features (B, F, h, w) and logits (B, h, w))."""
        return F.softplus(self.head(self.summary(features, torch.sigmoid(logits)[:, None])))

    def flops(self) -> float:
        return float(sum(matmul_flops(1, m.in_features, m.out_features) for m in self.head if isinstance(m, nn.Linear)))

    def price(self, budget: float) -> float:
        """λ at a run-time budget: the calibrated price of the largest grid budget at or below it."""
        index = max(0, int(np.searchsorted(BUDGET_GRID, budget + 1e-9, side="right")) - 1)
        return float(self.prices[index])

    @property
    def cap(self) -> float:
        """The most a sample may cost (ratio to dense): --max-cost beyond the router's own
        cost, which every sample spends; at every run-time budget alike."""
        return self.max_cost + float(self.costs[0])

    def allowed(self) -> Tensor:
        """(branches,) bool: the branches within the cap (persistence always)."""
        return self.costs <= self.cap + 1e-6

    def scores(self, predicted: Tensor, budget: float, price: float | None = None) -> Tensor:
        """(B, branches) predicted error (in loss units) + price·cost of each branch, +∞ for
        the branches above the cap. price: default, the calibrated one at `budget`."""
        price = self.price(budget) if price is None else price
        score = predicted + price * self.costs
        return score.masked_fill(~self.allowed(), float("inf"))

    def choose(self, predicted: Tensor, budget: float, price: float | None = None) -> Tensor:
        """(B,) the branch each sample takes under `budget`: its least score (the first
        of equal ones, as ONNX ArgMin); at budget 1, the widest level."""
        if budget >= 1.0:
            return torch.full((len(predicted),), self.branches - 1, dtype=torch.int64, device=predicted.device)
        return self.scores(predicted, budget, price).argmin(dim=1)

    def margins(self, predicted: Tensor, budget: float) -> Tensor:
        """(B,) the gap between each sample's best and second-best score: a sample with a
        tiny gap may route either way in another runtime's float arithmetic."""
        score = self.scores(predicted, budget)
        if int(torch.isfinite(score[0]).sum()) < 2:
            return torch.full((len(predicted),), float("inf"))
        best = score.topk(2, dim=1, largest=False).values
        return best[:, 1] - best[:, 0]

    @torch.no_grad()
    def calibrate(self, predicted: Tensor, costs: Tensor) -> None:
        """Set the branch costs and, per budget of BUDGET_GRID, the smallest price at which
        the mean cost of the samples whose predicted errors are `predicted` (held-out
        training windows; never validation or test ones), plus MARGIN_Z standard errors of
        that mean, is at most that budget. The prices are then made to fall (or stay) as
        the budget rises, raising a lower budget's where needed: more conservative, and no
        sample's branch costs less at a higher budget."""
        self.costs.copy_(costs)
        spread = float((predicted.amax(dim=1) - predicted.amin(dim=1)).max())
        steps = float((costs[1:] - costs[:-1]).clamp_min(1e-6).min())
        ceiling = spread / steps + 1.0  # at this price every sample takes the cheapest branch it may
        samples = len(predicted)
        for index, budget in enumerate(BUDGET_GRID):

            def spent(price: float, budget: float = float(budget)) -> float:
                cost = self.costs[self.choose(predicted, budget, price)].double()
                margin = MARGIN_Z * float(cost.std()) / samples**0.5 if samples > 1 else 0.0
                return float(cost.mean()) + margin

            if budget >= 1.0 or spent(0.0) <= budget:  # at 1, every sample runs the widest level whatever the price
                self.prices[index] = 0.0
                continue
            low, high = 0.0, ceiling
            for _ in range(PRICE_SEARCH_STEPS):
                middle = (low + high) / 2
                low, high = (low, middle) if spent(middle) <= budget else (middle, high)
            self.prices[index] = high
        for index in range(len(BUDGET_GRID) - 2, -1, -1):
            self.prices[index] = max(self.prices[index], self.prices[index + 1])

    def lower(self, graph, features: str, logits: str, budget: str, regions: int) -> str:
        """The router in the exported graph: the () int64 branch of the sample whose
        generator features (1, F, h, w) and logits (1, 1, h, w) are given (h·w = `regions`),
        under the () float `budget` tensor below 1, by the same rule and float32 steps as
        `choose` (at 1 the graph does not run the router: the widest level)."""
        scope = "router/widths"
        op, const = graph.op, graph.const
        axes = const([2, 3])
        scores = op("Sigmoid", logits, scope=scope)
        total = op(
            "ReduceSum", scores, axes, scope=scope, keepdims=0
        )  # once: the pooling's weight and, over the area, S's mean
        pooled = op(
            "Div",
            op("ReduceSum", op("Mul", features, scores, scope=scope), axes, scope=scope, keepdims=0),
            op("Max", total, const(np.float32(1e-6)), scope=scope),
            scope=scope,
        )
        # one kernel, where ReduceSum then Div are two (ReduceMean's axes became an input at opset 18)
        mean = (
            op("ReduceMean", features, scope=scope, axes=[2, 3], keepdims=0)
            if graph.opset < 18
            else op("ReduceMean", features, axes, scope=scope, keepdims=0)
        )
        mean_score = op("Div", total, const(np.float32(regions)), scope=scope)
        peak_score = graph.reduce("ReduceMax", op("Reshape", scores, const([1, regions]), scope=scope), 1, scope)
        summary = op("Concat", pooled, mean, mean_score, peak_score, scope=scope, axis=1)
        first, last = self.head[0], self.head[2]
        hidden = op(
            "Relu",
            op(
                "Gemm",
                summary,
                const(first.weight.detach().numpy().T, "router"),
                const(first.bias.detach().numpy(), "router"),
                scope=scope,
            ),
            scope=scope,
        )
        out = op(
            "Gemm",
            hidden,
            const(last.weight.detach().numpy().T, "router"),
            const(last.bias.detach().numpy(), "router"),
            scope=scope,
        )
        predicted = op("Softplus", out, scope=scope)
        # The price of the largest grid budget at or below `budget` (the first one below the
        # grid): prices never rise with the budget (`calibrate`), so it is the least price of
        # the budgets reached, the first always among them. Exactly that float, in two kernels
        # (a Gather at a computed index took five).
        grid = BUDGET_GRID.astype(np.float32).copy()
        grid[0] = -np.inf
        reached = op("LessOrEqual", const(grid), budget, scope=scope)
        candidates = op(
            "Where", reached, const(self.prices.numpy().astype(np.float32)), const(np.float32(np.inf)), scope=scope
        )
        price = graph.reduce("ReduceMin", candidates, 0, scope)  # (1,)
        costs = self.costs.numpy().astype(np.float32)
        score = op("Add", predicted, op("Mul", price, const(costs), scope=scope), scope=scope)
        if not bool(self.allowed().all()):
            score = op("Where", const(self.allowed().numpy()[None]), score, const(np.float32(np.inf)), scope=scope)
        return op(
            "Reshape", op("ArgMin", score, scope=scope, axis=1, keepdims=0), const(np.zeros(0, np.int64)), scope=scope
        )
