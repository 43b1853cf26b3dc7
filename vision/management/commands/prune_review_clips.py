"""``manage.py prune_review_clips``: delete review clips older than ``WALKOUT["REVIEW_CLIP_RETENTION_H"]`` hours
(``vision.clips.ClipStore.prune``; the beat task ``carts.tasks.review_clips_prune_task`` does the same hourly)."""
from django.core.management.base import BaseCommand

from vision.clips import clip_store


class Command(BaseCommand):
    help = "Delete review clips past their retention (WALKOUT['REVIEW_CLIP_RETENTION_H'])."

    def handle(self, *args, **options):
        store = clip_store()
        removed = store.prune()
        self.stdout.write(f"{removed} clip(s) older than {store.retention_h:g} h removed under {store.root}")
