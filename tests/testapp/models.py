import uuid

from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100)


class LedgerEntry(models.Model):
    """Lives on the ``other`` database alias."""

    amount = models.DecimalField(max_digits=12, decimal_places=2)


class Tag(models.Model):
    label = models.CharField(max_length=50)


class Book(models.Model):
    """About ten fields of mixed types, an FK and an M2M: the model the CRUD tests and benchmarks use."""

    title = models.CharField(max_length=200)
    summary = models.TextField(blank=True, default="")
    pages = models.IntegerField(default=0)
    price = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    rating = models.FloatField(default=0.0)
    in_print = models.BooleanField(default=True)
    published = models.DateField(null=True, blank=True)
    last_sold_at = models.DateTimeField(null=True, blank=True)
    isbn = models.UUIDField(default=uuid.uuid4)
    metadata = models.JSONField(default=dict, blank=True)
    cover = models.FileField(upload_to="covers/", blank=True, default="")
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    tags = models.ManyToManyField(Tag, related_name="books", blank=True)


class Chapter(models.Model):
    """Deleted with its book (cascade)."""

    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="chapters")
    number = models.IntegerField()


class Review(models.Model):
    """Keeps living when its book is deleted (SET_NULL)."""

    book = models.ForeignKey(Book, on_delete=models.SET_NULL, null=True, related_name="reviews")
    stars = models.IntegerField(default=3)


class ApiClient(models.Model):
    """Holds secrets: ``api_token`` is masked by name, ``notes`` only when MASK_FIELDS says so."""

    name = models.CharField(max_length=50)
    api_token = models.CharField(max_length=100)
    notes = models.TextField(blank=True, default="")


class Club(models.Model):
    name = models.CharField(max_length=50)
    members = models.ManyToManyField(Author, through="Membership", related_name="clubs")


class Membership(models.Model):
    """A link table of its own (custom ``through``)."""

    club = models.ForeignKey(Club, on_delete=models.CASCADE)
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
    role = models.CharField(max_length=20, default="member")


class Reader(models.Model):
    """A symmetrical many-to-many relation to itself (Django writes the mirror rows without signals)."""

    name = models.CharField(max_length=50)
    friends = models.ManyToManyField("self", blank=True)


class Device(models.Model):
    """Fields whose values the database stores in another form than given."""

    serial = models.UUIDField(primary_key=True, default=uuid.uuid4)
    address = models.GenericIPAddressField(null=True, blank=True)
    address_v4 = models.GenericIPAddressField(unpack_ipv4=True, null=True, blank=True)
    firmware = models.BinaryField(default=b"")
    seen_at = models.DateTimeField(null=True, blank=True)
    readings = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)


class BookProxy(Book):
    """Another view of the same rows (an admin's, say): settings that name ``Book`` apply to it too."""

    class Meta:
        proxy = True


class ApiClientProxy(ApiClient):
    class Meta:
        proxy = True


class PartnerClient(ApiClient):
    """A multi-table child: its saves write ``ApiClient``'s fields, in ``ApiClient``'s table."""

    partner = models.CharField(max_length=50, default="")


class Note(models.Model):
    """Attached to any row through a generic foreign key."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveIntegerField()
    target = GenericForeignKey("content_type", "object_id")
    text = models.CharField(max_length=50, default="")


class Board(models.Model):
    name = models.CharField(max_length=50)
    notes = GenericRelation(Note)


class Replica(models.Model):
    """Has a table on both databases (copies of rows are saved from one to the other)."""

    name = models.CharField(max_length=50)
    n = models.IntegerField(default=0)


class Code(models.Model):
    """A primary key the application chooses, and may change."""

    code = models.CharField(max_length=10, primary_key=True)
    label = models.CharField(max_length=50, default="")


class Region(models.Model):
    code = models.CharField(max_length=10, unique=True)
    name = models.CharField(max_length=50, default="")


class Office(models.Model):
    """Points at a region by its code, not its primary key (``to_field``)."""

    region = models.ForeignKey(
        Region, to_field="code", on_delete=models.CASCADE, null=True, related_name="offices"
    )
    name = models.CharField(max_length=50, default="")


class LiveTopics(models.Manager["Topic"]):
    """A soft-deleting default manager: archived topics are not returned."""

    def get_queryset(self) -> models.QuerySet["Topic"]:
        return super().get_queryset().filter(archived=False)


class Topic(models.Model):
    label = models.CharField(max_length=50)
    archived = models.BooleanField(default=False)

    objects = LiveTopics()
    all_objects = models.Manager()


class Post(models.Model):
    title = models.CharField(max_length=50)
    topics = models.ManyToManyField(Topic, related_name="posts", blank=True)


class Counter(models.Model):
    """A unique key, for upserts (``bulk_create(update_conflicts=True)``)."""

    key = models.CharField(max_length=20, unique=True)
    value = models.IntegerField(default=0)
