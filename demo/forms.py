from django import forms

from .models import Comment, Event


class EventForm(forms.ModelForm):
    class Meta:
        model = Event
        fields = ["title"]


class CommentForm(forms.ModelForm):
    class Meta:
        model = Comment
        fields = ["author", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 3})}
