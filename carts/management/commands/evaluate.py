"""``manage.py evaluate REC``: billed receipts beside the true ones, the AutoCheckout item-level score, the share of
receipts exactly right, the review rate and (for a simulated recording) the breakdown by scenario."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from carts.offline.evaluation import evaluate_session, merge_parties
from carts.models import ReviewItem
from carts.offline.replay import (
    PARTY_WITHIN_S,
    billed_receipts,
    database_behind,
    replay_recording,
    reviews_resolve_by_truth,
    session_decisions,
    session_prefix,
)
from carts.offline.simulation_truth import parties_from_gates, read_truth_events
from store.accounts.demo import demo_shopper_ensure
from store.gates.models import Visit
from store.recording import RecordingError, read_recording


class Command(BaseCommand):
    help = ("Compare what the pipeline billed for a recording with its true receipts (truth.json) and print "
            "item-level precision, recall and F1, the share of exact receipts, the review rate and, when the "
            "recording has truth_events.json (a simulated one), the breakdown by scenario. Uses the latest replay "
            "of the recording, or replays it first. Party members' receipts are scored together.")

    def add_arguments(self, parser):
        parser.add_argument("recording")
        parser.add_argument("--session", help="score this replay session (default: the latest of this recording)")
        parser.add_argument("--replay", action="store_true", help="always replay first, in a new session")
        parser.add_argument("--no-oracle", action="store_true",
                            help="leave open review items open (default with truth_events.json: resolve them as a "
                                 "perfect reviewer would, through the dashboard's review service)")

    @staticmethod
    def _check_session_of(rec, session: str) -> None:
        """Raise CommandError unless ``session`` replayed ``rec``: its visits are in the recording's store and bound to
        the recording's shopper tracks (scoring another recording's session against this truth gives figures that
        look plausible and mean nothing). Tracks are not checked for a recording whose tracks come from its video."""
        code = rec.store["store"]["code"]
        rows = list(Visit.objects.filter(session=session).values_list("store__code", "track_id"))
        stores = sorted({s for s, _ in rows} - {code})
        if stores:
            raise CommandError(f"session {session!r} ran in store {', '.join(stores)}, not in {code} of {rec.path}: "
                               f"it is not a session of this recording")
        if rec.cameras and len(rec.tracks) == 0:
            return  # shopper tracks come from the video when it is replayed: their ids are not in the folder
        known = {g.track for g in rec.gates} | {str(t) for t in rec.tracks.track_ids()} | \
            {r.track for r in rec.truth or []}
        foreign = sorted({t for _, t in rows if t} - known)
        if foreign:
            raise CommandError(f"session {session!r} holds shopper track(s) {', '.join(foreign[:5])} that "
                               f"{rec.path} does not have: it is a session of another recording (this one's "
                               f"sessions start with {session_prefix(rec)}@)")

    def handle(self, *args, recording, session=None, replay=False, no_oracle=False, **options):
        behind = database_behind()
        if behind:
            raise CommandError(behind)
        try:
            rec = read_recording(recording)
            truth_events = read_truth_events(rec.path)
        except (RecordingError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if rec.truth is None:
            raise CommandError(f"{rec.path / 'truth.json'}: missing file; nothing to evaluate against")
        if session is not None and not Visit.objects.filter(session=session).exists():
            raise CommandError(f"no visits were replayed in session {session!r}")
        if session is not None:
            self._check_session_of(rec, session)
        if session is None and not replay:
            latest = (Visit.objects.filter(session__startswith=f"{session_prefix(rec)}@").order_by("-id")
                      .values_list("session", flat=True).first())
            session = latest
        if session is None:
            session = replay_recording(rec, default_shopper=None, shopper_factory=demo_shopper_ensure).session
        party_of = parties_from_gates(rec.gates, within_s=PARTY_WITHIN_S)
        decisions = session_decisions(session=session, recording=rec)
        self.stdout.write(f"session {session}")
        if truth_events is not None and not no_oracle:
            done, failed = reviews_resolve_by_truth(session=session, decisions=decisions, truth_events=truth_events,
                                                    party_of=party_of)
            # put-backs that waited for those reviews are settled now; any whose pick went elsewhere is open
            decisions = session_decisions(session=session, recording=rec)
            if "review" in set(decisions.outcome):
                more, failed = reviews_resolve_by_truth(session=session, decisions=decisions,
                                                        truth_events=truth_events, party_of=party_of)
                done += more
                decisions = session_decisions(session=session, recording=rec)
            self.stdout.write(f"review items resolved by the oracle reviewer: {done}"
                              + (f" ({failed} could not be applied)" if failed else ""))
        left = ReviewItem.objects.filter(shelf_event__session=session,
                                         status__in=(ReviewItem.Status.OPEN, ReviewItem.Status.WAITING)).count()
        unbilled = Visit.objects.filter(session=session).exclude(state=Visit.State.BILLED).count()
        if left or unbilled:
            self.stdout.write(f"still open: {left} review items; {unbilled} visits not billed (their receipts are "
                              f"empty here until the reviews are decided)")
        billed = billed_receipts(session=session)
        truth = {r.track: {line.barcode: line.quantity for line in r.lines} for r in rec.truth}
        report = evaluate_session(billed, truth, party_of=party_of, decisions=decisions, truth_events=truth_events)
        b_all, t_all = merge_parties(billed, party_of), merge_parties(truth, party_of)
        for track in sorted(set(b_all) | set(t_all)):
            b, t = b_all.get(track, {}), t_all.get(track, {})
            mark = "exact" if {k: v for k, v in b.items() if v} == {k: v for k, v in t.items() if v} else "WRONG"
            members = sorted(m for m, lead in party_of.items() if lead == track and m != track)
            self.stdout.write(f"shopper track {track}: {mark}" + (f" (party with {', '.join(members)})"
                                                                   if members else ""))
            self.stdout.write(f"  {'barcode':<16}{'billed':>8}{'true':>8}")
            for code in sorted(set(b) | set(t)):
                self.stdout.write(f"  {code:<16}{b.get(code, 0):>8}{t.get(code, 0):>8}")
        score = report.score
        if report.scenarios:
            self.stdout.write(f"  {'scenario':<14}{'events':>7}{'right':>7}{'review':>7}{'wrong':>7}{'missed':>7}")
            for row in report.scenarios:
                self.stdout.write(f"  {row.name:<14}{row.events:>7}{row.right:>7}{row.reviewed:>7}{row.wrong:>7}"
                                  f"{row.missed:>7}")
        self.stdout.write(f"shelf events {report.detected}, sent to review {report.reviewed} "
                          f"(review rate {report.review_rate:.3f})")
        self.stdout.write(f"receipts exact {score.exact}/{score.receipts} ({score.exact_share:.3f})")
        self.stdout.write(f"items billed {score.billed_items} true {score.true_items} correct {score.true_positives}")
        self.stdout.write(f"precision {score.precision:.3f} recall {score.recall:.3f}")
        self.stdout.write(f"F1 {score.f1:.3f}")
