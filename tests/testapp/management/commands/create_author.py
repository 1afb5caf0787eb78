from django.core.management.base import BaseCommand

from tests.testapp.models import Author


class Command(BaseCommand):
    help = "Create one Author (used by the CRUD tests to check the system:<command> actor)."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        author = Author.objects.create(name=name)
        self.stdout.write(str(author.pk))
