"""Views and URLs for the CRUD actor tests (``ROOT_URLCONF = "tests.crud_views"`` in those tests)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.urls import path

from tests.testapp.models import Author


def create_author(request):
    """A plain view: the user comes from the session (AuthenticationMiddleware)."""
    author = Author.objects.create(name=request.GET["name"])
    return HttpResponse(str(author.pk))


def token_create_author(request):
    """Authenticates inside the view, as Django REST framework's token/JWT authentication does."""
    token = request.headers.get("Authorization", "")
    if token.startswith("Token "):
        request.user = get_user_model().objects.get(username=token.removeprefix("Token "))
    author = Author.objects.create(name=request.GET["name"])
    return HttpResponse(str(author.pk))


async def async_author_lifecycle(request):
    """acreate, asave, aupdate, adelete in an async view."""
    author = await Author.objects.acreate(name=request.GET["name"])
    author.name = f"{author.name} (edited)"
    await author.asave()
    await Author.objects.filter(pk=author.pk).aupdate(name=f"{author.name} (updated)")
    await author.adelete()
    return HttpResponse("ok")


urlpatterns = [
    path("authors/create/", create_author),
    path("authors/token-create/", token_create_author),
    path("authors/async/", async_author_lifecycle),
]
