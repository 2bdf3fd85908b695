"""Credentials in the admin: every write is a four-eye request, no secret is ever shown."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse

from approvals import services as approvals
from audit.admin_scope import HiddenFieldsAdminMixin

from . import services
from .models import Credential, SecretStore

# Mirrors the API (credentials.api.views): view_credential reads metadata;
# view_credential_names alone reads names and kinds, nothing more.
NAMES_ONLY_FIELDS = ("name", "kind")


def _names_only(request) -> bool:
    user = request.user
    return not user.has_perm("credentials.view_credential") and user.has_perm(
        "credentials.view_credential_names"
    )


class CredentialForm(forms.ModelForm):
    """Secrets are typed in, never shown: an empty box keeps the stored one."""

    password = forms.CharField(
        required=False,
        strip=False,
        max_length=services.MAX_PASSWORD_CHARS,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the stored password.",
    )
    private_key = forms.CharField(
        required=False,
        strip=False,
        max_length=services.MAX_PRIVATE_KEY_CHARS,
        widget=forms.Textarea(attrs={"autocomplete": "off", "rows": 4}),
        help_text="Private key or API token. Leave empty to keep the stored one.",
    )
    clear_password = forms.BooleanField(required=False, label="Remove the stored password")
    clear_private_key = forms.BooleanField(
        required=False, label="Remove the stored private key/token"
    )

    store = forms.ChoiceField(
        choices=SecretStore.choices,
        required=False,
        initial=SecretStore.LOCAL,
        help_text=Credential._meta.get_field("store").help_text,
    )

    class Meta:
        model = Credential
        fields = services.EDITABLE_FIELDS

    def clean_store(self) -> str:
        return self.cleaned_data.get("store") or SecretStore.LOCAL

    def clean(self) -> dict:
        # The API's check: the reference's shape and bounds, the secret in its store.
        data = super().clean()
        fields = {f: data[f] for f in services.EDITABLE_FIELDS if f in data}
        current = self.instance if self.instance.pk else None
        if current is not None:
            fields = {k: v for k, v in fields.items() if getattr(current, k) != v}
        try:
            services.check_reference(fields, self.secrets(), current)
        except ValidationError as exc:
            self.add_error(None, exc)
        return data

    def secrets(self) -> dict[str, str]:
        out = {}
        for field in services.SECRET_FIELDS:
            if self.cleaned_data.get(f"clear_{field}"):
                out[field] = ""
            elif self.cleaned_data.get(field):
                out[field] = self.cleaned_data[field]
        return out


@admin.register(Credential)
class CredentialAdmin(HiddenFieldsAdminMixin, admin.ModelAdmin):
    """Credentials through the audited services; the admin never renders a secret.

    Holders of ``view_credential_names`` only (Operators) see names and kinds,
    as in the API: no other column, field, search or filter.
    """

    form = CredentialForm
    list_display = ("name", "kind", "username", "scope", "store", "has_password", "updated_at")
    list_filter = ("kind", "store")
    search_fields = ("name", "username", "scope")
    readonly_fields = (
        "has_password",
        "has_private_key",
        "secret_changed_at",
        "created_at",
        "created_by",
        "updated_at",
        "updated_by",
    )

    hidden_fields = ("password_ciphertext", "private_key_ciphertext")

    @admin.display(boolean=True)
    def has_password(self, obj):
        return obj.has_password

    @admin.display(boolean=True)
    def has_private_key(self, obj):
        return obj.has_private_key

    # --- names-only readers -------------------------------------------------
    def has_view_permission(self, request, obj=None) -> bool:
        return super().has_view_permission(request, obj) or _names_only(request)

    def get_list_display(self, request):
        return NAMES_ONLY_FIELDS if _names_only(request) else super().get_list_display(request)

    def get_search_fields(self, request):
        return ("name",) if _names_only(request) else super().get_search_fields(request)

    def get_fields(self, request, obj=None):
        return NAMES_ONLY_FIELDS if _names_only(request) else super().get_fields(request, obj)

    def get_exclude(self, request, obj=None):
        if _names_only(request):
            shown = {*NAMES_ONLY_FIELDS, "id"}
            return tuple(f.name for f in Credential._meta.concrete_fields if f.name not in shown)
        return super().get_exclude(request, obj)

    # Every write is a four-eye request: the form's Save asks for it, and the
    # approval page is where a second person makes it happen.

    def _ask(self, request, obj, kind: str, fields: dict, secrets: dict) -> None:
        try:
            made = approvals.request_credential(
                kind, request.user, obj if obj.pk else None, fields, secrets
            )
        except approvals.Refused as exc:
            messages.error(request, str(exc))
            return
        except ValidationError as exc:
            messages.error(request, "; ".join(exc.messages))
            return
        request._pureboot_approval = made
        messages.warning(
            request,
            f"Approval request #{made.pk} created: {made.kind_label} "
            f"{made.target_label} waits for a second person until "
            f"{made.expires_at:%Y-%m-%d %H:%M %Z}; nothing is changed until then.",
        )

    def save_model(self, request, obj, form, change):
        fields = {f: form.cleaned_data[f] for f in services.EDITABLE_FIELDS}
        if change:
            before = Credential.objects.get(pk=obj.pk)
            fields = {k: v for k, v in fields.items() if getattr(before, k) != v}
        self._ask(
            request,
            obj,
            "credential.change" if change else "credential.create",
            fields,
            form.secrets(),
        )

    def delete_model(self, request, obj):
        self._ask(request, obj, "credential.delete", {}, {})

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self._ask(request, obj, "credential.delete", {}, {})

    # Django's bulk "Delete selected" would report "Successfully deleted" while
    # nothing is deleted yet: this action says what really happens.
    actions = ("ask_to_delete",)

    @admin.action(description="Ask to delete the selected credentials (a second person approves)")
    def ask_to_delete(self, request, queryset):
        for obj in queryset:
            self._ask(request, obj, "credential.delete", {}, {})

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        if not self.has_delete_permission(request):
            actions.pop("ask_to_delete", None)
        return actions

    def _to_request(self, request):
        made = getattr(request, "_pureboot_approval", None)
        target = reverse("approvals:detail", args=[made.pk]) if made else request.path
        return HttpResponseRedirect(target)

    def response_add(self, request, obj, post_url_continue=None):
        return self._to_request(request)

    def response_change(self, request, obj):
        return self._to_request(request)

    def response_delete(self, request, obj_display, obj_id):
        return self._to_request(request)

    # The audit trail records the requests and their execution; nothing
    # happened yet when these would log.
    def log_addition(self, request, obj, message):
        return None

    def log_change(self, request, obj, message):
        return None

    def log_deletion(self, request, obj, object_repr):
        return None

    def log_deletions(self, request, queryset):
        return None
