"""register(): publish hints when a model's instances are saved or deleted."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db.models import Model
from django.db.models.signals import post_delete, post_save

from .backends import get_config
from .constants import PRIVATE_PREFIX
from .exceptions import AlreadyRegistered, HintTooLarge, NotRegistered, PrivateChannelUnsupported
from .protocol import channel_error, is_private
from .publishing import publish_on

logger = logging.getLogger("pushgateway")

ACTIONS = ("created", "updated", "deleted")

ChannelsFor = Callable[[Model], "str | Iterable[str]"]


def object_channel(instance: Model) -> str:
    """The default channel of an object: "<app_label>.<model_name>.<pk>", with the prefix
    "private-" when its model is registered private (see channel_for)."""
    return f"{instance._meta.label_lower}.{instance.pk}"


def private_by_default() -> bool:
    return bool(get_config()["OPTIONS"].get("PRIVATE", False))


def privately(name: str) -> str:
    return name if is_private(name) else PRIVATE_PREFIX + name


@dataclass(frozen=True)
class Registration:
    model: type[Model]
    channels: ChannelsFor | None
    actions: tuple[str, ...]
    private: bool | None = None  # None: the project's default, OPTIONS["PRIVATE"]

    @property
    def is_private(self) -> bool:
        return private_by_default() if self.private is None else self.private

    def object_channel(self, instance: Model) -> str:
        name = object_channel(instance)
        return privately(name) if self.is_private else name

    def channels_for(self, instance: Model) -> list[str]:
        names = [object_channel(instance)]
        if self.channels is not None:
            extra = self.channels(instance)
            names.extend([extra] if isinstance(extra, str) else extra)
        if self.is_private:
            names = [privately(name) for name in names]
        return list(dict.fromkeys(names))

    def publish(self, instance: Model, action: str, using: str) -> None:
        if action not in self.actions:
            return
        hint = {"model": instance._meta.label_lower, "pk": str(instance.pk), "action": action}

        # A pk or a channels() result that makes no valid name (or a primary key too long
        # for a hint) must not fail the save: what cannot be sent is logged.
        def no_hint(reason) -> None:
            logger.error("pushgateway: no hint for %s %s: %s", hint["model"], hint["pk"], reason)

        channels = []
        for channel in self.channels_for(instance):
            problem = channel_error(channel)
            if problem:
                no_hint(problem)
            else:
                channels.append(channel)
        if not channels:
            return
        try:
            publish_on(channels, hint, using=using)
        except (HintTooLarge, PrivateChannelUnsupported) as exc:
            no_hint(exc)


_registry: dict[type[Model], Registration] = {}


def _on_save(sender, instance, created, raw=False, using=None, **kwargs):
    if raw:  # loaddata: fixtures are not changes anyone is watching
        return
    _registry[sender].publish(instance, "created" if created else "updated", using)


def _on_delete(sender, instance, using=None, **kwargs):
    _registry[sender].publish(instance, "deleted", using)


def register(
    model: type[Model] | None = None,
    *,
    channels: ChannelsFor | None = None,
    actions: Iterable[str] = ACTIONS,
    private: bool | None = None,
):
    """Publish a hint on every save or delete of `model`'s instances.

    The hint goes to the object's channel "<app_label>.<model_name>.<pk>" and to each name
    `channels(instance)` returns. With `private=True` (default: OPTIONS["PRIVATE"], False)
    every one of those names gets the prefix "private-", so only pages given a token (see
    pushgateway.watch) can subscribe. Usable as a class decorator, with or without
    arguments.
    """
    if model is None:
        return lambda model: register(model, channels=channels, actions=actions, private=private)
    actions = tuple(actions)
    unknown = sorted(set(actions) - set(ACTIONS))
    if unknown:
        raise ValueError(f"unknown actions {unknown}; choose from {list(ACTIONS)}")
    if model in _registry:
        raise AlreadyRegistered(f"{model._meta.label} is registered with pushgateway already")
    _registry[model] = Registration(model, channels, actions, private)
    uid = f"pushgateway:{model._meta.label}"
    post_save.connect(_on_save, sender=model, weak=False, dispatch_uid=uid)
    post_delete.connect(_on_delete, sender=model, weak=False, dispatch_uid=uid)
    return model


def unregister(model: type[Model]) -> None:
    if _registry.pop(model, None) is None:
        raise NotRegistered(f"{model._meta.label} is not registered with pushgateway")
    uid = f"pushgateway:{model._meta.label}"
    post_save.disconnect(sender=model, dispatch_uid=uid)
    post_delete.disconnect(sender=model, dispatch_uid=uid)


def private_models() -> list[str]:
    """The labels of the registered models whose hints go to private channels."""
    return sorted(r.model._meta.label for r in _registry.values() if r.is_private)


def is_registered(model: type[Model]) -> bool:
    return model in _registry


def public_by_default() -> list[type[Model]]:
    """The models registered without `private=` whose hints go on public channels (PRIVATE
    is off): a choice nobody made, which `check --deploy` asks about."""
    if private_by_default():
        return []
    return [model for model, r in _registry.items() if r.private is None]


def publish_for(objects: Iterable[Model], action: str = "updated", *, using: str | None = None):
    """Publish the hints register() would have, for changes its signals do not see.

    `queryset.update()`, `bulk_create()`, `bulk_update()` and raw SQL send no post_save;
    call this after them with the objects (or a queryset of them) and what happened:

        Comment.objects.filter(event=event).update(hidden=True)
        pushgateway.publish_for(Comment.objects.filter(event=event), "updated")

    Inside a transaction the hints wait for its commit, as usual. Raises NotRegistered for
    an object of a model that is not registered, ValueError for an unknown action.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; choose from {list(ACTIONS)}")
    for instance in objects:
        registration = _registry.get(type(instance))
        if registration is None:
            raise NotRegistered(f"{instance._meta.label} is not registered with pushgateway")
        registration.publish(instance, action, using or instance._state.db)


def channel_for(instance: Model) -> str:
    """The channel a registered object's own hints go to: "<app_label>.<model_name>.<pk>",
    or "private-<app_label>.<model_name>.<pk>" when its model is registered private. Pass it
    to pushgateway.watch() in the views that show the object."""
    registration = _registry.get(type(instance))
    if registration is None:
        raise NotRegistered(f"{instance._meta.label} is not registered with pushgateway")
    return registration.object_channel(instance)
