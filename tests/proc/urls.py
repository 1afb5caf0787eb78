from django.urls import path

from .views import emit_view, ready_view

urlpatterns = [path("emit", emit_view), path("ready", ready_view)]
