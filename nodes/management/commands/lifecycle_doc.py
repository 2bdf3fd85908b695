from django.core.management.base import BaseCommand

from nodes.lifecycle_doc import render


class Command(BaseCommand):
    help = "Print the node lifecycle (Mermaid diagram and table) drawn from the code."

    def handle(self, *args, **options):
        self.stdout.write(render(), ending="")
