"""Audited admin for users and groups (role membership is security-relevant) and credentials."""

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User

from . import credentials
from .admin_audit import AuditedAdminMixin
from .models import Credential

admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):
    pass


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin):
    pass


class CredentialForm(forms.ModelForm):
    """Secrets are typed in, never shown: an empty box keeps the stored one."""

    password = forms.CharField(
        required=False,
        strip=False,
        max_length=credentials.MAX_PASSWORD_CHARS,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the stored password.",
    )
    private_key = forms.CharField(
        required=False,
        strip=False,
        max_length=credentials.MAX_PRIVATE_KEY_CHARS,
        widget=forms.Textarea(attrs={"autocomplete": "off", "rows": 4}),
        help_text="Private key or API token. Leave empty to keep the stored one.",
    )
    clear_password = forms.BooleanField(required=False, label="Remove the stored password")
    clear_private_key = forms.BooleanField(
        required=False, label="Remove the stored private key/token"
    )

    class Meta:
        model = Credential
        fields = ("name", "kind", "username", "scope", "description")

    def secrets(self) -> dict[str, str]:
        out = {}
        for field in credentials.SECRET_FIELDS:
            if self.cleaned_data.get(f"clear_{field}"):
                out[field] = ""
            elif self.cleaned_data.get(field):
                out[field] = self.cleaned_data[field]
        return out


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin):
    """Credentials through the audited services; the admin never renders a secret."""

    form = CredentialForm
    list_display = ("name", "kind", "username", "scope", "has_password", "updated_at")
    list_filter = ("kind",)
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

    @admin.display(boolean=True)
    def has_password(self, obj):
        return obj.has_password

    @admin.display(boolean=True)
    def has_private_key(self, obj):
        return obj.has_private_key

    def save_model(self, request, obj, form, change):
        actor = f"user:{request.user.get_username()}"
        fields = {f: form.cleaned_data[f] for f in credentials.EDITABLE_FIELDS}
        if change:
            saved = credentials.update_credential(obj.pk, actor, fields, form.secrets())
        else:
            saved = credentials.create_credential(actor, fields, form.secrets())
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        credentials.delete_credential(obj.pk, f"user:{request.user.get_username()}")

    def delete_queryset(self, request, queryset):
        for pk in queryset.values_list("pk", flat=True):
            credentials.delete_credential(pk, f"user:{request.user.get_username()}")
