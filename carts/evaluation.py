"""Receipt accuracy, the AutoCheckout way (pure Python).

Item-level scoring of the CPS-IoT Week 2020 AutoCheckout competition (AiFi; as used by the CMU and AIM3S entries):
each shopper's billed receipt is compared with their true receipt, per product; the true positives of a
(shopper, product) are ``min(billed quantity, true quantity)``, so a wrong shopper, a wrong product and a wrong
quantity all count against. Put-backs cancel picks before scoring (receipts are net quantities).
precision = TP / billed items, recall = TP / true items, F1 = harmonic mean. With nothing billed and nothing true,
precision, recall and F1 are 1 (a correct empty session).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

Receipts = Mapping[str, Mapping[str, int]]  # shopper track id → {barcode: quantity}


@dataclass(frozen=True)
class ReceiptScore:
    """Item counts and scores over a session; ``exact`` receipts are those equal to the truth line for line."""

    true_positives: int
    billed_items: int
    true_items: int
    exact: int
    receipts: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.billed_items if self.billed_items else (1.0 if not self.true_items else 0.0)

    @property
    def recall(self) -> float:
        return self.true_positives / self.true_items if self.true_items else (1.0 if not self.billed_items else 0.0)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score_receipts(billed: Receipts, truth: Receipts) -> ReceiptScore:
    """Score ``billed`` receipts against ``truth`` (both keyed by shopper track id; quantities ≥ 0).

    Raises ValueError on a negative quantity (a receipt never holds one).
    """
    tp = billed_n = true_n = exact = 0
    shoppers = set(billed) | set(truth)
    for shopper in shoppers:
        b = {k: v for k, v in billed.get(shopper, {}).items() if v}
        t = {k: v for k, v in truth.get(shopper, {}).items() if v}
        for q in list(b.values()) + list(t.values()):
            if q < 0:
                raise ValueError(f"shopper {shopper}: negative quantity {q} on a receipt")
        billed_n += sum(b.values())
        true_n += sum(t.values())
        tp += sum(min(q, t.get(code, 0)) for code, q in b.items())
        exact += int(b == t)
    return ReceiptScore(tp, billed_n, true_n, exact, len(shoppers))
