"""The integrations UI: cards, the create wizard, the integration page's tabs and its actions,
and the Pull requests and Commits tabs of catalog entities.

Every action calls the same services and engine functions as the REST API
(:mod:`integrations.api.views`); reads go through :mod:`integrations.selectors`. Viewing needs a
signed-in user; every change needs ``integrations.edit_integration`` (403 otherwise), and the
templates render no mutating control without it.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.datastructures import MultiValueDict
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog.models import Entity
from catalog.refs import EntityRefError, parse_entity_ref
from catalog.selectors import entities_visible, scope_visibility_q
from catalog.views import catalog_read_required, entity_for_request, entity_page_context
from integrations import services
from integrations.api.serializers import IntegrationSerializer
from integrations.choices import (
    DiscoveredState,
    LinkState,
    RecommendedAction,
    Registration,
    SyncState,
    SyncTrigger,
)
from integrations.engine.imports import ImportRequest, discovered_import_many, imported_unlink
from integrations.forms import (
    AdvancedForm,
    ConnectorForm,
    MappingForm,
    SetupForm,
    apply_service_errors,
    integration_values,
)
from integrations.models import (
    Commit,
    DiscoveredEntity,
    Integration,
    PullRequest,
    WebhookDelivery,
)
from integrations.providers import registry
from integrations.selectors import (
    discovered_list,
    imported_list,
    integrations_visible,
    integrations_with_details,
    runs_list,
)
from integrations.tasks import sync_enqueue

EDIT_PERMISSION = "integrations.edit_integration"
PAGE_SIZE = 50
DISCOVERED_STATES = [
    ("discovered", "To import"),
    ("imported", "Imported"),
    ("gone", "Gone"),
    ("all", "All"),
]


def edit_required(view: Callable) -> Callable:
    """Signed in (else the login page) and holding ``edit_integration`` (else 403)."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.has_perm(EDIT_PERMISSION):
            raise PermissionDenied("You need the permission to edit integrations.")
        return view(request, *args, **kwargs)

    return wrapped


def _integration(request: HttpRequest, pk: int) -> Integration:
    return get_object_or_404(integrations_visible(request.user), pk=pk)


def _page(request: HttpRequest, queryset, size: int = PAGE_SIZE):
    return Paginator(queryset, size).get_page(request.GET.get("page"))


def _error_text(exc: ValidationError) -> str:
    if hasattr(exc, "error_dict"):
        return "; ".join(
            f"{key}: {' '.join(messages_)}" for key, messages_ in exc.message_dict.items()
        )
    return " ".join(exc.messages)


# --- list -------------------------------------------------------------------------------------


@require_GET
@login_required
def integration_list(request: HttpRequest) -> HttpResponse:
    integrations = integrations_with_details(integrations_visible(request.user))
    return render(request, "integrations/integration_list.html", {"integrations": integrations})


# --- the create wizard ------------------------------------------------------------------------

WIZARD_SESSION_KEY = "integration_wizard"
CONNECTOR_FORM_PREFIX = "connector"
WIZARD_STEPS = (
    ("setup", "Setup & Connectivity"),
    ("mapping", "Mapping & Correlation"),
    ("advanced", "Advanced Settings"),
    ("confirm", "Confirm & Enable"),
)
_STEP_KEYS = [key for key, _ in WIZARD_STEPS]


def _wizard_state(request: HttpRequest) -> dict:
    return request.session.get(WIZARD_SESSION_KEY, {})


def _wizard_store(request: HttpRequest, step: str, data) -> None:
    """Keep a step's answers in the session — not the inline connector form's: its secret
    would sit in the session table in clear (the connector itself is saved encrypted)."""
    state = _wizard_state(request)
    state[step] = {
        key: values
        for key, values in data.lists()
        if key not in ("csrfmiddlewaretoken", "action")
        and not key.startswith(f"{CONNECTOR_FORM_PREFIX}-")
    }
    request.session[WIZARD_SESSION_KEY] = state


def _stored(request: HttpRequest, step: str) -> MultiValueDict | None:
    raw = _wizard_state(request).get(step)
    return MultiValueDict(raw) if raw is not None else None


def _wizard_forms(request: HttpRequest) -> tuple[SetupForm, MappingForm, AdvancedForm]:
    """The three steps' forms, bound to what the session holds (unbound where nothing is)."""
    user = request.user
    setup = SetupForm(_stored(request, "setup"), user=user)
    mapping = MappingForm(_stored(request, "mapping"), initial=_mapping_initial(setup))
    advanced = AdvancedForm(_stored(request, "advanced"), user=user)
    return setup, mapping, advanced


def _mapping_initial(setup: SetupForm) -> dict:
    """Field mappings start from the chosen connector's provider defaults."""
    initial = {"rules": services.DEFAULT_CORRELATION, "mappings": {}}
    if setup.is_bound and setup.is_valid():
        try:
            provider_class = registry.get(setup.cleaned_data["connector"].provider)
        except registry.UnknownProvider:
            return initial
        initial["mappings"] = dict(provider_class.default_field_mappings)
    return initial


def _wizard_context(step: str, **context) -> dict:
    index = _STEP_KEYS.index(step)
    steps = [
        {"key": key, "label": label, "done": i < index, "current": i == index}
        for i, (key, label) in enumerate(WIZARD_STEPS)
    ]
    return {"steps": steps, "step": step, "step_label": WIZARD_STEPS[index][1], **context}


def _next_step(step: str) -> str:
    return _STEP_KEYS[min(_STEP_KEYS.index(step) + 1, len(_STEP_KEYS) - 1)]


def _previous_step(step: str) -> str:
    return _STEP_KEYS[max(_STEP_KEYS.index(step) - 1, 0)]


@require_GET
@edit_required
def wizard_start(request: HttpRequest) -> HttpResponse:
    request.session.pop(WIZARD_SESSION_KEY, None)
    return redirect("integrations:wizard", step="setup")


@require_http_methods(["GET", "POST"])
@edit_required
def wizard(request: HttpRequest, step: str) -> HttpResponse:
    if step not in _STEP_KEYS:
        return redirect("integrations:wizard", step="setup")
    # A later step needs the earlier ones done (a bookmark, or an expired session).
    setup, mapping, advanced = _wizard_forms(request)
    forms_by_step = {"setup": setup, "mapping": mapping, "advanced": advanced}
    for key in _STEP_KEYS[: _STEP_KEYS.index(step)]:
        form = forms_by_step[key]
        if not form.is_bound or not form.is_valid():
            messages.info(request, "Complete this step first.")
            return redirect("integrations:wizard", step=key)
    handler = {
        "setup": _wizard_setup,
        "mapping": _wizard_mapping,
        "advanced": _wizard_advanced,
        "confirm": _wizard_confirm,
    }[step]
    return handler(request, setup, mapping, advanced)


def _wizard_setup(request, setup: SetupForm, mapping, advanced) -> HttpResponse:
    connector_form = ConnectorForm(prefix=CONNECTOR_FORM_PREFIX)
    if request.method == "POST":
        action = request.POST.get("action", "next")
        setup = SetupForm(request.POST, user=request.user)
        if action == "create_connector":
            connector_form = ConnectorForm(request.POST, prefix=CONNECTOR_FORM_PREFIX)
            if connector_form.is_valid():
                try:
                    connector = services.connector_create(**connector_form.service_kwargs())
                except ValidationError as exc:
                    for message in apply_service_errors(exc, connector_form):
                        connector_form.add_error(None, message)
                else:
                    messages.success(request, f"Connector {connector.name} created.")
                    data = request.POST.copy()
                    data["connector"] = str(connector.pk)
                    _wizard_store(request, "setup", data)
                    return redirect("integrations:wizard", step="setup")
            messages.error(request, "The connector was not created: check the fields below.")
        elif action == "test":
            if setup.is_valid():
                result = services.connector_test(
                    connector=setup.cleaned_data["connector"], target=setup.target()
                )
                if result.ok:
                    messages.success(request, f"Connection OK: {result.message}")
                else:
                    messages.error(request, f"Connection failed: {result.message}")
                _wizard_store(request, "setup", request.POST)
            else:
                messages.error(request, "Fill in the connector and target to test the connection.")
        elif setup.is_valid():
            _wizard_store(request, "setup", request.POST)
            return redirect("integrations:wizard", step="mapping")
        else:
            messages.error(request, "Please correct the errors below.")
    elif not setup.is_bound:
        setup = SetupForm(user=request.user)
    return render(
        request,
        "integrations/integration_wizard_setup.html",
        _wizard_context("setup", form=setup, connector_form=connector_form),
    )


def _wizard_mapping(request, setup, mapping: MappingForm, advanced) -> HttpResponse:
    if request.method == "POST":
        mapping = MappingForm(request.POST, initial=_mapping_initial(setup))
        if request.POST.get("action") == "back":
            _wizard_store(request, "mapping", request.POST)
            return redirect("integrations:wizard", step="setup")
        if mapping.is_valid():
            _wizard_store(request, "mapping", request.POST)
            return redirect("integrations:wizard", step="advanced")
        messages.error(request, "Please correct the errors below.")
    elif mapping.is_bound:
        mapping.is_valid()  # show the stored rows and their errors again
    return render(
        request,
        "integrations/integration_wizard_mapping.html",
        _wizard_context("mapping", form=mapping),
    )


def _wizard_advanced(request, setup, mapping, advanced: AdvancedForm) -> HttpResponse:
    if request.method == "POST":
        advanced = AdvancedForm(request.POST, user=request.user)
        if request.POST.get("action") == "back":
            _wizard_store(request, "advanced", request.POST)
            return redirect("integrations:wizard", step="mapping")
        if advanced.is_valid():
            _wizard_store(request, "advanced", request.POST)
            return redirect("integrations:wizard", step="confirm")
        messages.error(request, "Please correct the errors below.")
    elif not advanced.is_bound:
        advanced = AdvancedForm(user=request.user)
    return render(
        request,
        "integrations/integration_wizard_advanced.html",
        _wizard_context("advanced", form=advanced),
    )


def _wizard_confirm(request, setup, mapping, advanced) -> HttpResponse:
    errors: list[str] = []
    if request.method == "POST":
        if request.POST.get("action") == "back":
            return redirect("integrations:wizard", step="advanced")
        if request.POST.get("confirm") != "on":
            errors.append("Tick the confirmation box to create the integration.")
        else:
            values = integration_values(setup, mapping, advanced, include_secondary=True)
            try:
                integration = services.integration_create(**values)
            except ValidationError as exc:
                errors = apply_service_errors(exc, setup, mapping, advanced)
                for form, step in ((setup, "setup"), (mapping, "mapping"), (advanced, "advanced")):
                    if form.errors:
                        messages.error(request, "Please correct the errors in this step.")
                        return render(
                            request,
                            f"integrations/integration_wizard_{step}.html",
                            _wizard_context(
                                step,
                                form=form,
                                connector_form=ConnectorForm(prefix=CONNECTOR_FORM_PREFIX),
                            ),
                        )
            else:
                request.session.pop(WIZARD_SESSION_KEY, None)
                messages.success(request, f"Integration {integration.name} created and enabled.")
                if request.POST.get("sync_now") == "on":
                    sync_enqueue(integration_id=integration.pk, trigger=SyncTrigger.MANUAL)
                    messages.info(request, "The first sync has been queued.")
                return redirect("integrations:detail", pk=integration.pk)
    summary = integration_values(setup, mapping, advanced, include_secondary=True)
    return render(
        request,
        "integrations/integration_wizard_confirm.html",
        _wizard_context(
            "confirm",
            summary=summary,
            errors=errors,
            registration_label=Registration(summary["registration"]).label,
        ),
    )


# --- the integration page ---------------------------------------------------------------------

TABS = (
    ("discovered", "Discovered", "integrations:detail"),
    ("imported", "Imported", "integrations:imported"),
    ("runs", "Runs", "integrations:runs"),
    ("webhooks", "Webhooks", "integrations:webhooks"),
    ("configuration", "Configuration", "integrations:configuration"),
)


def _integration_context(request: HttpRequest, pk: int, active: str) -> dict:
    integration = get_object_or_404(
        integrations_with_details(integrations_visible(request.user)), pk=pk
    )
    tabs = [
        {"label": label, "url": reverse(url_name, args=[pk]), "active": key == active}
        for key, label, url_name in TABS
    ]
    return {
        "integration": integration,
        "tabs": tabs,
        "can_edit": request.user.has_perm(EDIT_PERMISSION),
        "last_run": runs_list(integration=integration).first(),
    }


@require_GET
@login_required
def integration_discovered(request: HttpRequest, pk: int) -> HttpResponse:
    context = _integration_context(request, pk, "discovered")
    integration = context["integration"]
    state = request.GET.get("state", DiscoveredState.DISCOVERED)
    if state not in (*DiscoveredState.values, "all"):
        state = DiscoveredState.DISCOVERED
    action = request.GET.get("action") or None
    if action not in (None, *RecommendedAction.values):
        action = None
    search = request.GET.get("q", "").strip()
    page = _page(
        request,
        discovered_list(
            integration=integration,
            state=None if state == "all" else state,
            recommended_action=action,
            search=search,
        ),
    )
    context.update(
        page=page,
        state=state,
        action=action or "",
        search=search,
        states=[
            ("discovered", "To import"),
            ("imported", "Imported"),
            ("gone", "Gone"),
            ("all", "All"),
        ],
        can_register=integration.registration != Registration.MERGE,
        can_merge=integration.registration != Registration.REGISTER,
    )
    return render(request, "integrations/discovered_list.html", context)


@require_POST
@edit_required
def integration_import(request: HttpRequest, pk: int) -> HttpResponse:
    """One row's Register or Merge, or the checked rows by their recommendation."""
    integration = _integration(request, pk)
    post = request.POST
    if "register" in post:
        ids, mode = [post["register"]], RecommendedAction.REGISTER
    elif "merge" in post:
        ids, mode = [post["merge"]], RecommendedAction.MERGE
    else:
        ids, mode = post.getlist("selected"), None
    ids = [int(value) for value in ids if value.isdigit()]
    back = request.POST.get("next") or reverse("integrations:detail", args=[pk])
    if not ids:
        messages.warning(request, "Select at least one discovered entity to import.")
        return redirect(back)
    discovered = {
        d.pk: d
        for d in DiscoveredEntity.objects.filter(
            integration=integration, pk__in=ids
        ).select_related("suggested_entity")
    }
    requests_: list[ImportRequest] = []
    failures: list[str] = []
    targets = _merge_targets(request, integration, post, ids)
    for discovered_id in ids:
        row = discovered.get(discovered_id)
        if row is None:
            failures.append(f"No discovered entity {discovered_id}.")
            continue
        action = mode or row.recommended_action
        if action == RecommendedAction.MERGE:
            target = targets.get(discovered_id)
            if isinstance(target, str):
                failures.append(f"Could not merge {row.name}: {target}")
                continue
            requests_.append(ImportRequest(discovered_id, action=action, entity_id=target))
        else:
            entity_type = post.get(f"type-{discovered_id}", "").strip() or None
            requests_.append(ImportRequest(discovered_id, action=action, entity_type=entity_type))
    outcomes = discovered_import_many(
        integration=integration, requests=requests_, user=request.user
    )
    imported = [result for _, result, _ in outcomes if result is not None]
    for import_request, result, error in outcomes:
        if result is None:
            name = discovered[import_request.discovered_id].name
            failures.append(f"Could not import {name}: {error}")
    if len(imported) == 1 and len(ids) == 1:
        result = imported[0]
        verb = "Registered" if result.action == "REGISTER" else "Merged"
        preposition = "as" if verb == "Registered" else "into"
        messages.success(
            request, f"{verb} {result.discovered.name} {preposition} {result.entity.ref}."
        )
    elif imported:
        messages.success(
            request, f"Imported {len(imported)} entit{'y' if len(imported) == 1 else 'ies'}."
        )
    for failure in failures:
        messages.error(request, failure)
    return redirect(back)


def _merge_targets(request, integration, post, ids: list[int]) -> dict[int, int | str | None]:
    """Per discovered id: the visible entity chosen in its picker, None for the suggestion, or
    why the typed reference does not resolve."""
    keys: dict[int, str] = {}
    targets: dict[int, int | str | None] = {}
    for discovered_id in ids:
        raw = post.get(f"entity-{discovered_id}", "").strip()
        if not raw:
            targets[discovered_id] = None
            continue
        try:
            keys[discovered_id] = parse_entity_ref(raw, default_kind=integration.entity_kind).key
        except EntityRefError as exc:
            targets[discovered_id] = str(exc)
    found = dict(
        entities_visible(user=request.user)
        .filter(ref_key__in=set(keys.values()))
        .values_list("ref_key", "pk")
    )
    for discovered_id, key in keys.items():
        targets[discovered_id] = found.get(key, f"there is no catalog entity {key}")
    return targets


@require_POST
@edit_required
def integration_sync(request: HttpRequest, pk: int) -> HttpResponse:
    integration = _integration(request, pk)
    if not integration.is_enabled:
        messages.error(request, f"{integration.name} is suspended: re-enable it to sync.")
    else:
        sync_enqueue(integration_id=integration.pk, trigger=SyncTrigger.MANUAL)
        messages.success(request, f"Sync of {integration.name} queued.")
    return redirect(request.POST.get("next") or reverse("integrations:detail", args=[pk]))


@require_POST
@edit_required
def integration_auto_import(request: HttpRequest, pk: int) -> HttpResponse:
    integration = _integration(request, pk)
    enabled = request.POST.get("auto_import") == "on"
    services.integration_update(integration=integration, auto_import=enabled)
    messages.success(
        request,
        "Future discovered entities will be imported automatically."
        if enabled
        else "Auto-import is off: discovered entities wait for you to import them.",
    )
    return redirect("integrations:detail", pk=pk)


@require_GET
@login_required
def integration_imported(request: HttpRequest, pk: int) -> HttpResponse:
    context = _integration_context(request, pk, "imported")
    state = request.GET.get("state", LinkState.LINKED)
    if state not in (*LinkState.values, "all"):
        state = LinkState.LINKED
    search = request.GET.get("q", "").strip()
    context.update(
        page=_page(
            request,
            imported_list(
                integration=context["integration"],
                state=None if state == "all" else state,
                search=search,
            ),
        ),
        state=state,
        search=search,
        states=[("linked", "Linked"), ("unlinked", "Unlinked"), ("all", "All")],
    )
    return render(request, "integrations/importedentity_list.html", context)


@require_POST
@edit_required
def imported_unlink_view(request: HttpRequest, pk: int, imported_pk: int) -> HttpResponse:
    integration = _integration(request, pk)
    imported = get_object_or_404(imported_list(integration=integration), pk=imported_pk)
    imported_unlink(imported=imported)
    messages.success(
        request,
        f"Unlinked {imported.entity.ref}: it stays in the catalog and is no longer synced.",
    )
    return redirect("integrations:imported", pk=pk)


@require_GET
@login_required
def integration_runs(request: HttpRequest, pk: int) -> HttpResponse:
    context = _integration_context(request, pk, "runs")
    page = _page(request, runs_list(integration=context["integration"]), 25)
    context.update(page=page, running=any(run.state == SyncState.RUNNING for run in page))
    if request.GET.get("fragment"):
        return render(request, "integrations/syncrun_table.html", context)
    return render(request, "integrations/syncrun_list.html", context)


@require_GET
@login_required
def integration_webhooks(request: HttpRequest, pk: int) -> HttpResponse:
    context = _integration_context(request, pk, "webhooks")
    integration = context["integration"]
    try:
        events = list(getattr(registry.get(integration.provider), "webhook_events", ()))
    except registry.UnknownProvider:
        events = []
    context.update(
        webhook_url=IntegrationSerializer().get_webhook_url(integration),
        events=events,
        page=_page(request, WebhookDelivery.objects.filter(integration=integration), 25),
    )
    return render(request, "integrations/webhookdelivery_list.html", context)


@require_http_methods(["GET", "POST"])
@login_required
def integration_configuration(request: HttpRequest, pk: int) -> HttpResponse:
    context = _integration_context(request, pk, "configuration")
    integration = context["integration"]
    user = request.user
    errors: list[str] = []
    if request.method == "POST":
        if not context["can_edit"]:
            raise PermissionDenied("You need the permission to edit integrations.")
        setup = SetupForm(request.POST, user=user, instance=integration)
        mapping = MappingForm(
            request.POST, initial=MappingForm.initial_for(integration), locked_secondary=True
        )
        advanced = AdvancedForm(request.POST, user=user)
        if all([setup.is_valid(), mapping.is_valid(), advanced.is_valid()]):
            values = integration_values(setup, mapping, advanced, include_secondary=False)
            try:
                services.integration_update(integration=integration, **values)
            except ValidationError as exc:
                errors = apply_service_errors(exc, setup, mapping, advanced)
            else:
                messages.success(request, f"Settings of {values['name']} saved.")
                return redirect("integrations:configuration", pk=pk)
        messages.error(request, "The settings were not saved: please correct the errors below.")
    else:
        setup = SetupForm(initial=SetupForm.initial_for(integration), user=user)
        mapping = MappingForm(initial=MappingForm.initial_for(integration), locked_secondary=True)
        advanced = AdvancedForm(initial=AdvancedForm.initial_for(integration), user=user)
    context.update(setup=setup, mapping=mapping, advanced=advanced, errors=errors)
    return render(request, "integrations/integration_configuration.html", context)


_DANGER_ACTIONS = {
    "suspend": (
        "Suspend",
        "Suspending stops scheduled and webhook syncs. Imported entities stay in the catalog "
        "and nothing is deleted; you can re-enable the integration at any time.",
    ),
    "resume": (
        "Re-enable",
        "Re-enabling resumes scheduled syncs and queues one now.",
    ),
    "delete": (
        "Delete",
        "Deleting removes the integration, its discovered records, pull requests, commits and "
        "run history. Catalog entities stay; their link to this integration is removed. This "
        "cannot be undone.",
    ),
}


@require_http_methods(["GET", "POST"])
@edit_required
def integration_danger(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Suspend, re-enable or delete: a confirmation page (GET), then the action (POST)."""
    integration = _integration(request, pk)
    label, explanation = _DANGER_ACTIONS[action]
    error = ""
    if request.method == "POST":
        if action == "suspend":
            services.integration_suspend(integration=integration)
            messages.success(request, f"{integration.name} is suspended: it will not sync.")
            return redirect("integrations:configuration", pk=pk)
        if action == "resume":
            services.integration_resume(integration=integration)
            sync_enqueue(integration_id=integration.pk, trigger=SyncTrigger.MANUAL)
            messages.success(request, f"{integration.name} is enabled again; a sync is queued.")
            return redirect("integrations:configuration", pk=pk)
        if request.POST.get("confirm_name", "").strip() == integration.name:
            name = integration.name
            services.integration_delete(integration=integration)
            messages.success(request, f"Integration {name} deleted.")
            return redirect("integrations:list")
        error = "Type the integration's name exactly to delete it."
    return render(
        request,
        "integrations/integration_confirm.html",
        {
            "integration": integration,
            "action": action,
            "label": label,
            "explanation": explanation,
            "error": error,
        },
    )


# --- tabs of catalog entities -----------------------------------------------------------------


def _entity_sources(request: HttpRequest, entity: Entity) -> Q:
    """Discovered records linked to the entity (PRs and commits hang off those), of the
    integrations the user may see: an entity of no scope may be linked to the integrations of
    several scopes, and each one's records stay in its scope."""
    q = Q(discovered__imports__entity=entity, discovered__imports__state=LinkState.LINKED)
    visible = scope_visibility_q(request.user, field="discovered__integration__scope")
    return q if visible is None else q & visible


@require_GET
@catalog_read_required
def entity_pull_requests(
    request: HttpRequest, namespace: str, kind: str, name: str
) -> HttpResponse:
    entity = entity_for_request(request, namespace, kind, name)
    state = request.GET.get("state", "").upper()
    sources = _entity_sources(request, entity)
    queryset = PullRequest.objects.filter(sources).select_related("discovered")
    if state:
        queryset = queryset.filter(state=state)
    context = entity_page_context(entity, "pull-requests")
    context.update(
        page=_page(request, queryset.order_by("-updated_on", "-pk").distinct(), 25),
        state=state,
        states=["OPEN", "MERGED", "DECLINED", "SUPERSEDED"],
    )
    return render(request, "integrations/pullrequest_list.html", context)


@require_GET
@catalog_read_required
def entity_commits(request: HttpRequest, namespace: str, kind: str, name: str) -> HttpResponse:
    entity = entity_for_request(request, namespace, kind, name)
    queryset = Commit.objects.filter(_entity_sources(request, entity)).select_related("discovered")
    context = entity_page_context(entity, "commits")
    context["page"] = _page(request, queryset.order_by("-date", "-pk").distinct(), 25)
    return render(request, "integrations/commit_list.html", context)
