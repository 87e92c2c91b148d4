"""The integrations UI: cards, the create wizard, the integration page's tabs and its actions,
and the Pull requests and Commits tabs of catalog entities.

Every action calls the same services as the REST API (:mod:`integrations.api.views`); reads
go through :mod:`integrations.selectors`. Viewing needs a
signed-in user; every change needs ``integrations.edit_integration`` (403 otherwise), and the
templates render no mutating control without it.
"""

from collections.abc import Callable
from functools import wraps
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.datastructures import MultiValueDict
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog.models import Entity
from catalog.selectors import scope_visibility_q
from catalog.views import (
    EntityNotice,
    EntityNoticeAction,
    catalog_read_required,
    entity_for_request,
    entity_page_context,
    entity_url_kwargs,
)
from integrations import services
from integrations.choices import (
    DiscoveredState,
    LinkState,
    ProcessingStage,
    RecommendedAction,
    Registration,
    SyncMode,
    SyncState,
    WritebackMode,
    WritebackState,
)
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
    Connector,
    DiscoveredEntity,
    ImportedEntity,
    Integration,
    PullRequest,
    SyncRun,
    WebhookDelivery,
    WriteBack,
    WriteBackBatch,
)
from integrations.providers import registry
from integrations.providers.base import ProviderError
from integrations.providers.bitbucket_cloud.client import HOURLY_LIMIT as CLOUD_HOURLY_LIMIT
from integrations.providers.http import ConnectorNetwork
from integrations.selectors import (
    MergeTargetUnresolved,
    change_refusal,
    connectors_visible,
    discovered_list,
    imported_list,
    integrations_visible,
    integrations_with_details,
    merge_targets_resolve,
    runs_list,
    user_scope_limited,
    writeback_batch_get,
    writebacks_for_entity,
    writebacks_for_integration,
)

EDIT_PERMISSION = "integrations.edit_integration"
PAGE_SIZE = 50
DISCOVERED_STATES = [
    ("discovered", "To import"),
    ("imported", "Imported"),
    ("gone", "Gone"),
    ("all", "All"),
]
# The Discovered tab's filter of records whose import, refresh or reads failed (the API's
# ``?state=error``).
NEEDS_ATTENTION = "error"
# The Imported tab's filter of linked entities whose repository a full listing no longer finds.
SOURCE_GONE = "gone"


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
    """The integration, for a change: 404 when the user cannot see it, 403 (with the reason)
    when it belongs to the whole account and the user's permission is limited to scopes."""
    integration = get_object_or_404(integrations_visible(request.user), pk=pk)
    refusal = change_refusal(user=request.user, obj=integration)
    if refusal:
        raise PermissionDenied(refusal)
    return integration


def _page(request: HttpRequest, queryset, size: int = PAGE_SIZE):
    return Paginator(queryset, size).get_page(request.GET.get("page"))


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
    mapping = MappingForm(
        _stored(request, "mapping"), initial=_mapping_initial(setup), user=request.user
    )
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
    connector_form = ConnectorForm(prefix=CONNECTOR_FORM_PREFIX, user=request.user)
    if request.method == "POST":
        action = request.POST.get("action", "next")
        setup = SetupForm(request.POST, user=request.user)
        if action == "create_connector":
            # The integration's own fields are not being submitted: keep what was typed, but
            # do not judge it (its errors would crowd the connector's).
            setup = SetupForm(initial=request.POST.dict(), user=request.user)
            connector_form = ConnectorForm(
                request.POST, prefix=CONNECTOR_FORM_PREFIX, user=request.user
            )
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
            covering = _covering_warning(setup)
            if covering:
                messages.warning(request, covering)
            return redirect("integrations:wizard", step="mapping")
        else:
            messages.error(request, "Please correct the errors below.")
    elif not setup.is_bound:
        setup = SetupForm(user=request.user)
    covering = _covering_warning(setup) if setup.is_bound and setup.is_valid() else ""
    return render(
        request,
        "integrations/integration_wizard_setup.html",
        _wizard_context(
            "setup", form=setup, connector_form=connector_form, covering_warning=covering
        ),
    )


def _covering_warning(setup: SetupForm) -> str:
    """Non-blocking: the integrations already on the chosen workspace or instance and
    projects."""
    others = services.integrations_covering(
        connector=setup.cleaned_data["connector"], target=setup.target()
    )
    if not others:
        return ""
    names = ", ".join(other.name for other in others)
    return (
        "One integration per workspace is the advice; these already cover it: "
        f"{names}. A repository both would import is flagged as a conflict on the later one."
    )


def _wizard_mapping(request, setup, mapping: MappingForm, advanced) -> HttpResponse:
    if request.method == "POST":
        mapping = MappingForm(request.POST, initial=_mapping_initial(setup), user=request.user)
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
                                connector_form=ConnectorForm(
                                    prefix=CONNECTOR_FORM_PREFIX, user=request.user
                                ),
                            ),
                        )
            else:
                request.session.pop(WIZARD_SESSION_KEY, None)
                messages.success(request, f"Integration {integration.name} created and enabled.")
                if request.POST.get("sync_now") == "on":
                    services.integration_sync_request(integration=integration, user=request.user)
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
    ("writes", "Writes", "integrations:writes"),
    ("configuration", "Configuration", "integrations:configuration"),
)


def _needs_attention_count() -> Coalesce:
    """The integration's records that need attention, as a subquery of the page's one read of
    the integration (the partial index on ``error_since`` answers it)."""
    rows = (
        DiscoveredEntity.objects.filter(integration=OuterRef("pk"), error_since__isnull=False)
        .order_by()
        .values("integration")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), 0)


def _integration_context(request: HttpRequest, pk: int, active: str) -> dict:
    integration = get_object_or_404(
        integrations_with_details(integrations_visible(request.user)).annotate(
            needs_attention_count=_needs_attention_count(),
            last_full_requests=Subquery(
                SyncRun.objects.filter(
                    integration=OuterRef("pk"),
                    mode=SyncMode.FULL,
                    state__in=[SyncState.SUCCEEDED, SyncState.PARTIAL],
                )
                .order_by("-started_at", "-pk")
                .values("requests")[:1]
            ),
        ),
        pk=pk,
    )
    tabs = [
        {
            "label": label,
            "url": reverse(url_name, args=[pk]),
            "active": key == active,
            "count": integration.needs_attention_count if key == "discovered" else 0,
            "count_url": (
                f"{reverse(url_name, args=[pk])}?state={NEEDS_ATTENTION}"
                if key == "discovered"
                else ""
            ),
        }
        for key, label, url_name in TABS
    ]
    refusal = change_refusal(user=request.user, obj=integration)
    return {
        "integration": integration,
        "tabs": tabs,
        "can_edit": request.user.has_perm(EDIT_PERMISSION) and refusal is None,
        "read_only_reason": refusal
        or (
            ""
            if request.user.has_perm(EDIT_PERMISSION)
            else "You need the permission to edit integrations to change these settings."
        ),
        "last_run": runs_list(integration=integration).first(),
        "full_sync_cost": full_sync_cost(integration),
    }


@require_GET
@login_required
def integration_discovered(request: HttpRequest, pk: int) -> HttpResponse:
    context = _integration_context(request, pk, "discovered")
    integration = context["integration"]
    state = request.GET.get("state", DiscoveredState.DISCOVERED)
    if state not in (*DiscoveredState.values, NEEDS_ATTENTION, "all"):
        state = DiscoveredState.DISCOVERED
    action = request.GET.get("action") or None
    if action not in (None, *RecommendedAction.values):
        action = None
    search = request.GET.get("q", "").strip()
    queryset = discovered_list(
        integration=integration,
        state=None if state in ("all", NEEDS_ATTENTION) else state,
        recommended_action=action,
        search=search,
        needs_attention=state == NEEDS_ATTENTION,
    )
    page = _page(request, queryset)
    for row in page:
        row.error_items = record_errors(row)
    attention = integration.needs_attention_count
    context.update(
        page=page,
        state=state,
        action=action or "",
        search=search,
        states=[
            *DISCOVERED_STATES[:3],
            (NEEDS_ATTENTION, f"Needs attention ({attention})"),
            DISCOVERED_STATES[3],
        ],
        can_register=integration.registration != Registration.MERGE,
        can_merge=integration.registration != Registration.REGISTER,
        writeback_blocker=writeback_blocker(request, integration),
    )
    return render(request, "integrations/discovered_list.html", context)


def _stage_label(stage: str) -> str:
    try:
        return ProcessingStage(stage).label
    except ValueError:
        return stage


def record_errors(record: DiscoveredEntity) -> list[dict]:
    """A record's processing errors for a template, oldest first, with their stage's label and
    ``since``/``at`` as datetimes."""
    items = []
    for stage, error in (record.processing_errors or {}).items():
        if not isinstance(error, dict):
            continue
        items.append(
            {
                "stage": stage,
                "label": _stage_label(stage),
                "message": error.get("message", ""),
                "reason": error.get("reason", ""),
                "hint": error.get("hint", ""),
                "since": parse_datetime(error.get("since") or ""),
                "at": parse_datetime(error.get("at") or ""),
            }
        )
    far = timezone.now()
    return sorted(items, key=lambda item: item["since"] or far)


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
    requests_: list[services.ImportRequest] = []
    failures: list[str] = []
    targets = merge_targets_resolve(
        user=request.user,
        default_kind=integration.entity_kind,
        chosen={i: post.get(f"entity-{i}", "").strip() for i in ids},
    )
    for discovered_id in ids:
        row = discovered.get(discovered_id)
        if row is None:
            failures.append(f"No discovered entity {discovered_id}.")
            continue
        action = mode or row.recommended_action
        if action == RecommendedAction.MERGE:
            target = targets.get(discovered_id)
            if isinstance(target, MergeTargetUnresolved):
                why = target.error or f"there is no catalog entity {target.missing}"
                failures.append(f"Could not merge {row.name}: {why}")
                continue
            requests_.append(services.ImportRequest(discovered_id, action=action, entity_id=target))
        else:
            entity_type = post.get(f"type-{discovered_id}", "").strip() or None
            requests_.append(
                services.ImportRequest(discovered_id, action=action, entity_type=entity_type)
            )
    outcomes = services.discovered_import_many(
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


@require_POST
@edit_required
def integration_sync(request: HttpRequest, pk: int) -> HttpResponse:
    """Sync now, or (``full=1``, the Full sync control) list every repository again now."""
    integration = _integration(request, pk)
    try:
        requested = services.integration_sync_request(
            integration=integration, full=request.POST.get("full") == "1", user=request.user
        )
    except services.IntegrationSuspended:
        messages.error(request, f"{integration.name} is suspended: re-enable it to sync.")
    else:
        messages.success(request, requested.detail)
    return redirect(_safe_next(request) or reverse("integrations:detail", args=[pk]))


def full_sync_cost(integration: Integration) -> str:
    """What a full sync costs in requests, for its confirmation: the last full run's count if
    there was one, else an estimate from the known repositories (a listing page per 100, and
    about two reads per repository: its catalog file and its pull requests or commits)."""
    repositories = integration.discovered_count
    if integration.last_full_requests:
        estimate = f"about {integration.last_full_requests:,} requests (the last full sync's)"
    else:
        estimate = f"about {-(-repositories // 100) + 2 * repositories:,} requests (estimated)"
    budget = (integration.connector.config or {}).get("requests_per_hour")
    if not budget and integration.provider == "bitbucket_cloud":
        budget = CLOUD_HOURLY_LIMIT
    share = f" of the connector's ~{int(budget):,}/hour budget" if budget else ""
    return (
        f"A full sync costs {estimate}{share} for {repositories:,} known "
        f"repositor{'y' if repositories == 1 else 'ies'}: it lists every repository, notices "
        "deletions and applies changed rules now instead of at the next scheduled full listing."
    )


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
    if state not in (*LinkState.values, SOURCE_GONE, "all"):
        state = LinkState.LINKED
    search = request.GET.get("q", "").strip()
    queryset = imported_list(
        integration=context["integration"],
        state={"all": None, SOURCE_GONE: LinkState.LINKED}.get(state, state),
        search=search,
        source_gone=True if state == SOURCE_GONE else None,
    )
    context.update(
        page=_page(request, queryset),
        state=state,
        search=search,
        states=[
            ("linked", "Linked"),
            (SOURCE_GONE, "Source gone"),
            ("unlinked", "Unlinked"),
            ("all", "All"),
        ],
        writeback_blocker=writeback_blocker(request, context["integration"]),
        provider_name=_provider_name(context["integration"]),
    )
    return render(request, "integrations/importedentity_list.html", context)


def _provider_name(integration: Integration) -> str:
    """The provider's display name for column headers; the raw key when its provider is no longer
    registered, so the page still renders."""
    try:
        return registry.get(integration.provider).name
    except registry.UnknownProvider:
        return integration.provider


@require_POST
@edit_required
def imported_unlink_view(request: HttpRequest, pk: int, imported_pk: int) -> HttpResponse:
    integration = _integration(request, pk)
    imported = get_object_or_404(imported_list(integration=integration), pk=imported_pk)
    services.imported_unlink(imported=imported)
    messages.success(
        request,
        f"Unlinked {imported.entity.ref}: it stays in the catalog and is no longer synced.",
    )
    return redirect(_safe_next(request) or reverse("integrations:imported", args=[pk]))


def _safe_next(request: HttpRequest) -> str:
    """The form's ``next`` page if it is one of ours (the entity page's banner posts here)."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


@require_GET
@login_required
def integration_runs(request: HttpRequest, pk: int) -> HttpResponse:
    context = _integration_context(request, pk, "runs")
    page = _page(request, runs_list(integration=context["integration"]), 25)
    for run in page:
        run.error_groups = [
            {**group, "label": _stage_label(group.get("stage", ""))}
            for group in run.error_summary or ()
            if isinstance(group, dict)
        ]
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
    subscriptions = [
        (
            subscription,
            [other for other in subscription.integrations.all() if other.pk != integration.pk],
        )
        for subscription in integration.webhook_subscriptions.prefetch_related("integrations")
    ]
    context.update(
        webhook_url=integration.webhook_url,
        subscriptions=subscriptions,
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
            raise PermissionDenied(context["read_only_reason"])
        setup = SetupForm(request.POST, user=user, instance=integration)
        mapping = MappingForm(
            request.POST,
            initial=MappingForm.initial_for(integration),
            user=user,
            locked_secondary=True,
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
        mapping = MappingForm(
            initial=MappingForm.initial_for(integration), user=user, locked_secondary=True
        )
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
            services.integration_sync_request(integration=integration, user=request.user)
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


# Stages whose failure means the entity shows stale data, and what the notice calls them.
_ENTITY_STAGE_TITLES = {
    ProcessingStage.IMPORT: "could not be imported",
    ProcessingStage.REFRESH: "could not be refreshed",
    ProcessingStage.CATALOG_FILE: "could not read its catalog-info.yaml",
    ProcessingStage.PULL_REQUESTS: "could not read its pull requests",
    ProcessingStage.COMMITS: "could not read its commits",
}


def entity_notices_from_sources(request: HttpRequest, entity: Entity) -> list[EntityNotice]:
    """The entity page's notices from its linked records (one query): the repository is gone
    (with Unlink and Delete), the last refresh or read from the repository failed, or the
    latest write-back of catalog-info.yaml to it failed."""
    links = (
        ImportedEntity.objects.filter(entity=entity, state=LinkState.LINKED)
        .select_related("discovered", "integration")
        .annotate(**_latest_write_annotations())
    )
    visible = scope_visibility_q(request.user, field="integration__scope")
    if visible is not None:
        links = links.filter(visible)
    can_unlink = request.user.has_perm(EDIT_PERMISSION)
    # An account-level integration's links are changed only by a user not limited to scopes.
    can_unlink_unscoped = can_unlink and not user_scope_limited(request.user)
    can_delete = request.user.has_perm("catalog.delete_entity")
    notices: list[EntityNotice] = []
    for link in links.only(
        "integration__name",
        "integration__scope_id",
        "discovered__name",
        "discovered__state",
        "discovered__gone_at",
        "discovered__last_seen_at",
        "discovered__processing_errors",
    ):
        record, integration = link.discovered, link.integration
        if record.state == DiscoveredState.GONE:
            since = record.gone_at or record.last_seen_at
            actions = []
            if can_unlink if integration.scope_id else can_unlink_unscoped:
                actions.append(
                    EntityNoticeAction(
                        "Unlink",
                        reverse("integrations:unlink", args=[integration.pk, link.pk]),
                        f"Stop syncing {integration.name} into {entity.name}; the entity stays "
                        "in the catalog as it is.",
                    )
                )
            if can_delete:
                actions.append(
                    EntityNoticeAction(
                        "Delete",
                        reverse("catalog:entity-delete", kwargs=entity_url_kwargs(entity)),
                        f"Delete {entity.ref} from the catalog, with its relations. This "
                        "cannot be undone.",
                        danger=True,
                        confirm=True,
                    )
                )
            notices.append(
                EntityNotice(
                    "danger",
                    f"Source repository gone since {since:%Y-%m-%d %H:%M} UTC",
                    f"{integration.name} no longer lists the repository {record.name}: it was "
                    "deleted, moved or made invisible to the connector.",
                    hint=(
                        "If it moved, fix the integration's target or credential and run a full "
                        "sync; otherwise unlink the entity to keep it, or delete it."
                    ),
                    actions=tuple(actions),
                )
            )
            continue
        for stage, title in _ENTITY_STAGE_TITLES.items():
            error = (record.processing_errors or {}).get(stage)
            if not isinstance(error, dict):
                continue
            since = parse_datetime(error.get("since") or "")
            when = f" since {since:%Y-%m-%d %H:%M} UTC" if since else ""
            notices.append(
                EntityNotice(
                    "warn",
                    f"{integration.name} {title}{when}: what is shown may be out of date",
                    error.get("message", ""),
                    hint=error.get("hint")
                    or "Fix the cause, then sync the integration again; the error clears "
                    "when that step succeeds.",
                    link=(
                        "See the records that need attention",
                        f"{reverse('integrations:detail', args=[integration.pk])}"
                        f"?state={NEEDS_ATTENTION}",
                    ),
                )
            )
        notice = writeback_failed_notice(link, record, entity)
        if notice is not None:
            notices.append(notice)
    return notices


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
    context = entity_page_context(entity, "pull-requests", request)
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
    context = entity_page_context(entity, "commits", request)
    context["page"] = _page(request, queryset.order_by("-date", "-pk").distinct(), 25)
    return render(request, "integrations/commit_list.html", context)


# --- connectors and their browser authorisation ----------------------------------------------

# The session's pending browser authorisations, by connector id (state, PKCE verifier, expiry).
OAUTH_SESSION_KEY = "connector_oauth"
# What the connector page says for ``?bitbucket_error=<code>``: what happened, and the fix.
AUTHORISATION_ERRORS = {
    "access_denied": (
        "The authorisation was declined in Bitbucket: nothing was connected.",
        "Click Connect again and choose Allow on Bitbucket's page.",
    ),
    "invalid_grant": (
        "Bitbucket refused the authorization code (invalid_grant).",
        "Check that the application link's redirect URL is exactly the one shown below, then "
        "click Connect again (a code is single use and expires after a few minutes).",
    ),
    "invalid_client": (
        "Bitbucket refused the client id or secret (invalid_client).",
        "Copy the client id and secret again from the application link into the connector.",
    ),
    "invalid_state": (
        "The authorisation answer did not match one started from this browser session.",
        "Click Connect again, and finish in the same browser within ten minutes.",
    ),
}


def _connector_for(request: HttpRequest, pk: int, *, change: bool = False) -> Connector:
    """The connector: 404 when the user cannot see it; for a ``change``, 403 (with the reason)
    when it belongs to the whole account and the user's permission is limited to scopes."""
    connector = get_object_or_404(connectors_visible(request.user), pk=pk)
    refusal = change_refusal(user=request.user, obj=connector) if change else None
    if refusal:
        raise PermissionDenied(refusal)
    return connector


def _browser_spec(connector: Connector):
    """The connector's auth kind spec when it is authorised in a browser (Connect), else None."""
    try:
        provider_class = registry.get(connector.provider)
    except registry.UnknownProvider:
        return None
    spec = next((s for s in provider_class.auth_kinds if s.key == connector.auth_kind), None)
    return spec if spec is not None and spec.browser_authorization else None


@require_GET
@login_required
def connector_list(request: HttpRequest) -> HttpResponse:
    connectors = connectors_visible(request.user).annotate(integration_count=Count("integrations"))
    return render(request, "integrations/connector_list.html", {"connectors": connectors})


@require_GET
@login_required
def connector_detail(request: HttpRequest, pk: int) -> HttpResponse:
    connector = _connector_for(request, pk)
    spec = _browser_spec(connector)
    code = request.GET.get("bitbucket_error", "")
    problem = AUTHORISATION_ERRORS.get(code)
    if code and problem is None:
        problem = (f"Bitbucket answered the authorisation with {code!r}.", "Click Connect again.")
    context = {
        "connector": connector,
        "integrations": integrations_visible(request.user).filter(connector=connector),
        "can_edit": request.user.has_perm(EDIT_PERMISSION)
        and change_refusal(user=request.user, obj=connector) is None,
        "browser_authorization": spec is not None,
        "connected": spec is not None and bool(connector.secrets.get("refresh_token")),
        "network": ConnectorNetwork.of(connector).with_defaults(),
        "redirect_uri": (
            registry.get(connector.provider).oauth_redirect_uri(connector) if spec else ""
        ),
        "authorisation_error": {"code": code, "what": problem[0], "fix": problem[1]}
        if problem
        else None,
    }
    return render(request, "integrations/connector_detail.html", context)


@require_POST
@edit_required
def connector_connect(request: HttpRequest, pk: int) -> HttpResponse:
    """Start the browser authorisation: keep its state in the session, go to Bitbucket."""
    connector = _connector_for(request, pk, change=True)
    try:
        started = services.connector_oauth_start(connector=connector)
    except (services.OAuthFlowError, ValidationError) as exc:
        messages.error(request, f"Cannot connect {connector.name}: {_first_message(exc)}")
        return redirect("integrations:connector-detail", pk=pk)
    pending = request.session.get(OAUTH_SESSION_KEY, {})
    pending[str(connector.pk)] = started.pending
    request.session[OAUTH_SESSION_KEY] = pending
    return redirect(started.url)


@require_GET
@edit_required
def connector_oauth_callback(request: HttpRequest, connector_id: int) -> HttpResponse:
    """Where Bitbucket sends the person back: check the state (single use: it leaves the session
    now), exchange the code, and show the outcome on the connector page."""
    connector = _connector_for(request, connector_id, change=True)
    pending_all = request.session.get(OAUTH_SESSION_KEY, {})
    pending = pending_all.pop(str(connector.pk), None)
    request.session[OAUTH_SESSION_KEY] = pending_all
    detail = reverse("integrations:connector-detail", args=[connector.pk])
    error = request.GET.get("error", "")
    if error:
        described = request.GET.get("error_description", "")
        if described:
            messages.error(request, f"Bitbucket: {described}")
        return redirect(f"{detail}?{urlencode({'bitbucket_error': error})}")
    try:
        services.connector_oauth_complete(
            connector=connector,
            code=request.GET.get("code", ""),
            state=request.GET.get("state", ""),
            pending=pending,
        )
    except services.OAuthFlowError as exc:
        messages.error(request, str(exc))
        return redirect(f"{detail}?{urlencode({'bitbucket_error': 'invalid_state'})}")
    except ProviderError as exc:
        messages.error(request, exc.message)
        code = next((c for c in AUTHORISATION_ERRORS if c in exc.message), "")
        return redirect(f"{detail}?{urlencode({'bitbucket_error': code})}" if code else detail)
    messages.success(request, f"Connector {connector.name} is connected to Bitbucket.")
    return redirect(detail)


@require_POST
@edit_required
def connector_test_view(request: HttpRequest, pk: int) -> HttpResponse:
    connector = _connector_for(request, pk, change=True)
    result = services.connector_test(connector=connector)
    if result.ok:
        messages.success(request, f"Connection OK: {result.message}")
    else:
        messages.error(request, f"Connection failed: {result.message}")
    return redirect("integrations:connector-detail", pk=pk)


def _first_message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(exc.messages)
    return str(exc)


# --- write-back of catalog-info.yaml -----------------------------------------------------------

WRITE_BACK_PERMISSION = "integrations.write_back"
WRITE_BACK_PERMISSION_MISSING = (
    "You need the permission to write catalog-info.yaml back to repositories "
    f"({WRITE_BACK_PERMISSION})."
)


# The confirm form's ``expected-<id>`` for a repository that had no catalog file in the preview.
EXPECTED_NO_FILE = "none"


def writeback_required(view: Callable) -> Callable:
    """Signed in (else the login page) and holding ``write_back`` (else 403): writing to a
    repository is a permission of its own, apart from editing integrations."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request.user.has_perm(WRITE_BACK_PERMISSION):
            raise PermissionDenied(WRITE_BACK_PERMISSION_MISSING)
        return view(request, *args, **kwargs)

    return wrapped


def writeback_blocker(request: HttpRequest, integration: Integration) -> str:
    """Why the user cannot write back through ``integration`` now ("" when they can): the
    permission, the account-level rule, or the connector's missing write access (the cached
    probe of :func:`services.writeback_access`, asked only when the rest allows it)."""
    if not request.user.has_perm(WRITE_BACK_PERMISSION):
        return WRITE_BACK_PERMISSION_MISSING
    refusal = change_refusal(user=request.user, obj=integration)
    if refusal:
        return refusal
    try:
        allowed, reason = services.writeback_access(integration=integration)
    except ProviderError as exc:
        return f"Write access of connector {integration.connector.name} is unknown: {exc.message}"
    if allowed:
        return ""
    return f"Connector {integration.connector.name} cannot write: {reason}"


def writeback_modes(integration: Integration) -> list[dict]:
    """The write modes the preview offers, each with why it is not offered: a direct commit
    only where the integration's admin picked it."""
    chosen = integration.writeback_mode or WritebackMode.PULL_REQUEST
    return [
        {
            "value": WritebackMode.PULL_REQUEST,
            "label": "Pull request",
            "help": "A branch lantern/catalog-info-<name>, one commit, and a pull request into "
            "the default branch for a person to review and merge.",
            "checked": chosen == WritebackMode.PULL_REQUEST,
            "disabled_reason": "",
        },
        {
            "value": WritebackMode.COMMIT,
            "label": "Direct commit",
            "help": "One commit straight onto the default branch.",
            "checked": chosen == WritebackMode.COMMIT,
            "disabled_reason": ""
            if chosen == WritebackMode.COMMIT
            else "Not allowed by this integration: an administrator picks direct commits as "
            "its write mode in the integration's settings.",
        },
    ]


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """A unified diff as (kind, line) pairs for the template's colours: ``add``, ``del``,
    ``hunk``, ``meta`` (the file headers) or ``same``."""
    lines = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            kind = "meta"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        lines.append((kind, line))
    return lines


def commit_url(write) -> str:
    """The web page of a write's commit, from its repository's web address (Cloud's
    ``…/{repo}`` and Data Center's ``…/repos/{repo}/browse`` both take ``/commits/{sha}``)."""
    base = (write.discovered.data or {}).get("url") or ""
    if not write.commit or not base.startswith(("https://", "http://")):
        return ""
    return f"{base.rstrip('/').removesuffix('/browse')}/commits/{write.commit}"


def _with_commit_urls(writes):
    for write in writes:
        write.commit_url = commit_url(write)
    return writes


def _ids(values: list[str]) -> list[int]:
    return list(dict.fromkeys(int(value) for value in values if value.strip().isdigit()))


def _writeback_preview_url(pk: int, ids: list[int], back: str = "") -> str:
    query = [("discovered", str(i)) for i in ids] + ([("next", back)] if back else [])
    return f"{reverse('integrations:write-back-preview', args=[pk])}?{urlencode(query)}"


def _safe_target(request: HttpRequest, target: str) -> str:
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return ""


@require_http_methods(["GET", "POST"])
@login_required
def writeback_preview_view(request: HttpRequest, pk: int) -> HttpResponse:
    """What would be written, per repository, before anything is: a link (GET, from the
    entity page) or the selected rows of the Discovered and Imported tabs (POST, which needs
    the permission, as it starts a write)."""
    if request.method == "POST":
        if not request.user.has_perm(WRITE_BACK_PERMISSION):
            raise PermissionDenied(WRITE_BACK_PERMISSION_MISSING)
        _integration(request, pk)
        ids = _ids(request.POST.getlist("selected"))
        back = _safe_next(request)
        if not ids:
            messages.warning(
                request, "Select at least one repository to write catalog-info.yaml to."
            )
            return redirect(back or reverse("integrations:imported", args=[pk]))
    else:
        ids = _ids(request.GET.getlist("discovered"))
        back = _safe_target(request, request.GET.get("next", ""))
    context = _integration_context(request, pk, "writes")
    integration = context["integration"]
    previews = []
    errors: list[str] = []
    if ids:
        try:
            previews = services.writeback_preview(
                integration=integration, discovered_ids=ids, user=request.user
            )
        except ValidationError as exc:
            errors = _field_messages(exc)
        except ProviderError as exc:
            errors = [f"Could not read the repositories' files: {exc.message}"]
    rows = [{"preview": preview, "lines": diff_lines(preview.diff)} for preview in previews]
    writable = [p for p in previews if p.allowed and not p.unchanged]
    blocker = writeback_blocker(request, integration) if previews else ""
    context.update(
        rows=rows,
        errors=errors,
        writable=writable,
        blocker=blocker,
        modes=writeback_modes(integration),
        back=back,
        confirm_reason=blocker
        or (
            ""
            if writable
            else "Nothing to write: every repository shown is unchanged or cannot be written."
        ),
    )
    return render(request, "integrations/writeback_preview.html", context)


def _field_messages(exc: ValidationError) -> list[str]:
    """A service refusal as sentences naming their field."""
    if hasattr(exc, "error_dict"):
        return [
            f"{field}: {message}" if field != "__all__" else message
            for field, field_messages in exc.message_dict.items()
            for message in field_messages
        ]
    return list(exc.messages)


@require_POST
@writeback_required
def writeback_request_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Confirm: record one pending write per repository and queue them as one batch."""
    integration = _integration(request, pk)
    ids = _ids(request.POST.getlist("discovered"))
    back = _safe_next(request)
    if not ids:
        messages.warning(request, "Select at least one repository to write catalog-info.yaml to.")
        return redirect(back or reverse("integrations:writes", args=[pk]))
    # The blob id each preview row showed ("none": no file): a file changed since is refused.
    expected = {}
    for discovered_id in ids:
        blob = request.POST.get(f"expected-{discovered_id}", "")
        if blob:
            expected[discovered_id] = None if blob == EXPECTED_NO_FILE else blob
    try:
        batch = services.writeback_request(
            integration=integration,
            discovered_ids=ids,
            mode=request.POST.get("mode") or None,
            user=request.user,
            expected=expected or None,
        )
    except ValidationError as exc:
        for message in _field_messages(exc):
            messages.error(request, f"Nothing was written: {message}")
        return redirect(_writeback_preview_url(pk, ids, back))
    count = f"{batch.total} repositor{'y' if batch.total == 1 else 'ies'}"
    messages.success(
        request,
        f"Writing catalog-info.yaml to {count} as "
        f"{'pull requests' if batch.mode == WritebackMode.PULL_REQUEST else 'direct commits'}.",
    )
    url = f"{reverse('integrations:write-back-batch', args=[pk])}?{urlencode({'id': batch.pk})}"
    return redirect(f"{url}&{urlencode({'next': back})}" if back else url)


@require_GET
@login_required
def writeback_batch_view(request: HttpRequest, pk: int) -> HttpResponse:
    """A batch's progress and each repository's outcome (``?id=``; the latest batch without
    it), refreshing itself while it runs; ``fragment=1`` is the refreshing part alone."""
    context = _integration_context(request, pk, "writes")
    integration = context["integration"]
    batch_id = request.GET.get("id", "")
    if batch_id:
        if not batch_id.isdigit():
            raise Http404("No such write-back.")
        try:
            batch = writeback_batch_get(
                pk=int(batch_id), user=request.user, integration=integration
            )
        except WriteBackBatch.DoesNotExist:
            raise Http404("No such write-back.") from None
    else:
        batch = integration.writeback_batches.order_by("-requested_at", "-pk").first()
        if batch is not None:
            batch = writeback_batch_get(pk=batch.pk, user=request.user, integration=integration)
    writes = _with_commit_urls(list(batch.writes.all())) if batch is not None else []
    context.update(
        batch=batch,
        writes=writes,
        running=bool(batch) and batch.state in (WritebackState.PENDING, WritebackState.RUNNING),
        back=_safe_target(request, request.GET.get("next", "")),
    )
    if request.GET.get("fragment"):
        return render(request, "integrations/writeback_batch_progress.html", context)
    return render(request, "integrations/writeback_batch.html", context)


@require_GET
@login_required
def integration_writes(request: HttpRequest, pk: int) -> HttpResponse:
    """The Writes tab: every write-back of the integration, newest first."""
    context = _integration_context(request, pk, "writes")
    integration = context["integration"]
    page = _page(request, writebacks_for_integration(integration=integration), 25)
    _with_commit_urls(page)
    context.update(
        page=page,
        blocker=writeback_blocker(request, integration),
    )
    return render(request, "integrations/writeback_list.html", context)


def _entity_links(request: HttpRequest, entity: Entity):
    links = ImportedEntity.objects.filter(entity=entity, state=LinkState.LINKED).select_related(
        "discovered", "integration", "integration__connector"
    )
    visible = scope_visibility_q(request.user, field="integration__scope")
    return links.filter(visible) if visible is not None else links


@require_GET
@catalog_read_required
def entity_writes(request: HttpRequest, namespace: str, kind: str, name: str) -> HttpResponse:
    """The entity's catalog file tab: the action to write it to each linked repository
    (disabled with the reason where it cannot be) and the writes made so far."""
    entity = entity_for_request(request, namespace, kind, name)
    context = entity_page_context(entity, "writes", request)
    here = request.get_full_path()
    sources = []
    if request.user.is_authenticated:
        for link in _entity_links(request, entity).order_by("integration__name", "pk"):
            sources.append(
                {
                    "integration": link.integration,
                    "repository": link.discovered,
                    "preview_url": _writeback_preview_url(
                        link.integration_id, [link.discovered_id], here
                    ),
                    "blocker": writeback_blocker(request, link.integration),
                }
            )
    context.update(
        sources=sources,
        writes=_with_commit_urls(list(writebacks_for_entity(entity=entity, user=request.user))),
    )
    return render(request, "integrations/writeback_entity.html", context)


def _latest_write_annotations() -> dict[str, Subquery]:
    """The latest write-back of a link's repository (its state, error, hint and time), as
    subqueries of the entity page's one read of its links."""
    latest = WriteBack.objects.filter(
        discovered=OuterRef("discovered"), integration=OuterRef("integration")
    ).order_by("-requested_at", "-pk")
    return {
        f"last_write_{field}": Subquery(latest.values(field)[:1])
        for field in ("state", "error", "hint", "finished_at")
    }


def writeback_failed_notice(link, record: DiscoveredEntity, entity: Entity) -> EntityNotice | None:
    """A notice when the latest write-back to the link's repository failed, with its error and
    what to do."""
    if getattr(link, "last_write_state", None) != WritebackState.FAILED:
        return None
    when = link.last_write_finished_at
    return EntityNotice(
        "warn",
        f"Writing catalog-info.yaml to {record.name} failed"
        + (f" at {when:%Y-%m-%d %H:%M} UTC" if when else ""),
        link.last_write_error,
        hint=link.last_write_hint,
        link=(
            "See the writes",
            reverse("integrations-entity:writes", kwargs=entity_url_kwargs(entity)),
        ),
    )
