"""Image template API: streaming multipart uploads, versions, ranged downloads."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from nodes import services as node_services
from pureboot.api.permissions import ModelPermissions
from pureboot.http import serve_file

from .. import imagefiles, images
from ..models import ImageTemplate, ImageTemplateVersion


class TemplateVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImageTemplateVersion
        fields = (
            "number",
            "format",
            "arch",
            "size",
            "sha256",
            "virtual_size",
            "author_name",
            "created_at",
            "conversion",
            "raw_size",
            "raw_sha256",
            "error",
        )


class TemplateSerializer(serializers.ModelSerializer):
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = ImageTemplate
        fields = ("id", "name", "description", "kind", "latest_version", "created_at")

    def get_latest_version(self, obj) -> dict | None:
        latest = obj.latest_version
        return TemplateVersionSerializer(latest).data if latest else None


class TemplateUploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    format = serializers.ChoiceField(choices=imagefiles.FORMATS)
    arch = serializers.ChoiceField(choices=("x86_64", "aarch64", "armhf"))
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    file = serializers.FileField()


class TemplateViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Image templates. POST is a multipart upload (name, format, arch, file)."""

    queryset = ImageTemplate.objects.all()
    serializer_class = TemplateSerializer
    permission_classes = (IsAuthenticated, ModelPermissions)
    lookup_value_regex = r"\d{1,18}"
    parser_classes = (MultiPartParser,)
    filterset_fields = ("name", "kind")
    ordering_fields = ("name", "created_at")
    ordering = ("name",)

    def initialize_request(self, request, *args, **kwargs):
        # Before anything reads the body: stream uploads to disk, hashing as they come.
        request.upload_handlers = [imagefiles.HashingUploadHandler(request)]
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": TemplateUploadSerializer},
        responses={201: TemplateSerializer, 200: TemplateSerializer},
    )
    def create(self, request, *args, **kwargs):
        serializer = TemplateUploadSerializer(data=request.data)
        upload = request.data.get("file") if hasattr(request.data, "get") else None
        if getattr(request._request, "pureboot_upload_too_large", False):
            limit = settings.PUREBOOT_MAX_IMAGE_BYTES
            return Response(
                {
                    "detail": f"The image is larger than PUREBOOT_MAX_IMAGE_BYTES ({limit}).",
                    "code": "too_large",
                },
                status=413,
            )
        try:
            serializer.is_valid(raise_exception=True)
            if not isinstance(upload, imagefiles.HashedTemporaryFile):
                raise exceptions.ValidationError({"file": "Send the image as a file part."})
            data = serializer.validated_data
            result = images.upload_version(
                name=data["name"],
                fmt=data["format"],
                arch=data["arch"],
                description=data.get("description", ""),
                upload=upload,
                actor=node_services.Actor.of(request.user),
            )
        except imagefiles.FormatMismatch as exc:
            raise exceptions.ValidationError({"file": [str(exc)]}) from None
        except imagefiles.ToolMissing as exc:
            return Response({"detail": str(exc), "code": "tool_missing"}, status=503)
        except DjangoValidationError as exc:
            raise exceptions.ValidationError(exc.message_dict) from None
        finally:
            if isinstance(upload, imagefiles.HashedTemporaryFile):
                upload.discard()
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(TemplateSerializer(result.template).data, status=code)

    def destroy(self, request, *args, **kwargs):
        template = self.get_object()
        try:
            images.delete_template(template.pk, node_services.Actor.of(request.user))
        except images.TemplateInUse as exc:
            return Response(
                {"detail": str(exc), "code": "template_in_use", "nodes": exc.node_ids},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=TemplateVersionSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        template = self.get_object()
        page = self.paginate_queryset(template.versions.order_by("-number"))
        return self.get_paginated_response(TemplateVersionSerializer(page, many=True).data)

    @extend_schema(
        filters=False,
        responses={200: OpenApiResponse(description="the image file (Range supported)")},
    )
    @action(
        detail=True,
        methods=["get", "head"],
        url_path=r"versions/(?P<number>\d{1,9})/file",
    )
    def file(self, request, pk=None, number=None):
        """Download a version; ``?variant=raw`` gives the raw conversion of qcow2/VHDX."""
        template = self.get_object()
        version = get_object_or_404(template.versions, number=int(number))
        if request.query_params.get("variant") == "raw" and version.format != "raw":
            if version.conversion != "done":
                return Response(
                    {
                        "detail": f"No raw copy yet (conversion: {version.conversion}).",
                        "code": "not_converted",
                    },
                    status=409,
                )
            relative, etag = version.raw_path, version.raw_sha256
            filename = f"{template.name}-v{version.number}.img"
        else:
            relative, etag = version.path, version.sha256
            filename = f"{template.name}-v{version.number}{imagefiles.SUFFIX[version.format]}"
        path = imagefiles.image_root() / relative
        if not path.is_file():
            raise Http404("The stored file is missing; see the server log.")
        return serve_file(request, path, relative=relative, etag=etag, filename=filename)
