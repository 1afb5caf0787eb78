from django.urls import path
from library import views

urlpatterns = [
    path("books/", views.books, name="books"),
    path("books/<int:pk>/", views.book_detail, name="book-detail"),
    path("login/", views.login_view, name="login"),
]
