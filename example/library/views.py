"""JSON views for the demo: list and create books, update and delete one, log in."""

import json
import logging
from decimal import Decimal

from django.contrib.auth import authenticate, login
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters

from .models import Author, Book

logger = logging.getLogger(__name__)


def _book(book: Book) -> dict:
    return {"id": book.pk, "title": book.title, "author": book.author.name, "price": str(book.price)}


@csrf_exempt
def books(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        data = json.loads(request.body)
        author, _ = Author.objects.get_or_create(name=data["author"])
        book = Book.objects.create(title=data["title"], author=author, price=Decimal(data["price"]))
        logger.info("Book %s created", book.pk, extra={"book_id": book.pk})
        return JsonResponse(_book(book), status=201)
    return JsonResponse({"books": [_book(b) for b in Book.objects.select_related("author")]})


@csrf_exempt
def book_detail(request: HttpRequest, pk: int) -> HttpResponse:
    book = get_object_or_404(Book, pk=pk)
    if request.method == "PATCH":
        data = json.loads(request.body)
        for field in ("title", "price"):
            if field in data:
                setattr(book, field, Decimal(data[field]) if field == "price" else data[field])
        book.save()
    elif request.method == "DELETE":
        book.delete()
        return HttpResponse(status=204)
    return JsonResponse(_book(book))


@csrf_exempt
@sensitive_post_parameters("password")
def login_view(request: HttpRequest) -> HttpResponse:
    user = authenticate(request, username=request.POST.get("username"), password=request.POST.get("password"))
    if user is None:
        return JsonResponse({"ok": False}, status=401)
    login(request, user)
    return JsonResponse({"ok": True})
