"""The API's views. Each answers one operation by calling one plain function of the app (services for
a campaign's actions, audience.importing for imports, message.preflight, audience.follow_ups, stats);
who may call it is the view's `checks`, the admin's own permission checks (permissions.py)."""

import csv
import io
from pathlib import Path

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.http import FileResponse, Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, parsers, renderers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from campaigns import services, stats
from campaigns.api import idempotency
from campaigns.api import permissions as checks
from campaigns.api import serializers as s
from campaigns.audience import follow_ups, plan, suppression
from campaigns.audience.importing import uploads
from campaigns.audience.spreadsheets import delivery_log_rows
from campaigns.exceptions import CampaignError, ProviderError
from campaigns.message import preflight
from campaigns.models import (
    NEVER_STARTED,
    Campaign,
    CampaignVariant,
    DeliveryLog,
    Recipient,
    RecipientImport,
    SendingAccount,
    SendingPool,
    Suppression,
    WebhookEndpoint,
    WebhookMessage,
)
from campaigns.security import permissions
from campaigns.webhooks import endpoints

SPREADSHEET_TYPES = {"text/csv": ".csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
                     "application/vnd.ms-excel": ".xls"}


class ByIdCursor(CursorPagination):
    ordering = "id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000


class NewestFirstCursor(ByIdCursor):
    ordering = "-id"


class CsvRenderer(renderers.BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data if isinstance(data, (bytes, str)) else b""


class SpreadsheetParser(parsers.BaseParser):
    """A CSV, XLSX or XLS body, copied into a temporary file in chunks (never the whole body in memory)."""

    media_type = "*/*"
    accepted = tuple(SPREADSHEET_TYPES)

    def parse(self, stream, media_type=None, parser_context=None):
        from django.core.files.uploadedfile import TemporaryUploadedFile

        kind = (media_type or "").split(";")[0].strip().lower()
        if kind not in SPREADSHEET_TYPES:
            raise parsers.ParseError("Send text/csv, an XLSX or XLS body, multipart/form-data or JSON rows.")
        upload = TemporaryUploadedFile(f"upload{SPREADSHEET_TYPES[kind]}", kind, 0, None)
        while chunk := stream.read(1 << 20) if stream else b"":
            upload.write(chunk)
        upload.size = upload.tell()
        upload.seek(0)
        return {"file": upload}


class ApiViewSet(viewsets.GenericViewSet):
    """Staff only, the admin's permissions, one error shape, Idempotency-Key on every POST."""

    permission_classes = [checks.StaffChecks]
    checks = {}

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        request.idempotency_row = idempotency.claim(request)

    def handle_exception(self, exc):
        if isinstance(exc, idempotency.Replay):
            return exc.response
        return super().handle_exception(exc)

    def dispatch(self, request, *args, **kwargs):
        response = None
        try:
            response = super().dispatch(request, *args, **kwargs)
            return response
        finally:
            idempotency.record(getattr(self.request, "idempotency_row", None), response)


def message(text, campaign=None, code=status.HTTP_200_OK):
    body = {"message": text}
    if campaign is not None:
        campaign.refresh_from_db()
        body["campaign"] = s.CampaignSerializer(campaign).data
    return Response(body, status=code)


NO_BODY = extend_schema(request=None, responses=s.MessageSerializer)


@extend_schema_view(
    list=extend_schema(parameters=[
        OpenApiParameter("status", str, enum=[v for v, _ in Campaign.Status.choices], description="Only this status."),
        OpenApiParameter("search", str, description="Part of the name.")]),
)
class CampaignViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.RetrieveModelMixin,
                      mixins.UpdateModelMixin, mixins.DestroyModelMixin, ApiViewSet):
    """Campaigns: list, create, read, change while editable, delete drafts; their actions and results."""

    queryset = Campaign.objects.all()
    serializer_class = s.CampaignSerializer
    pagination_class = NewestFirstCursor
    checks = {
        "list": checks.view_of("campaign"), "retrieve": checks.view_of("campaign"),
        "create": checks.add_of("campaign"), "update": checks.change_of("campaign"),
        "partial_update": checks.change_of("campaign"), "destroy": checks.delete_of("campaign"),
        "schedule": permissions.can_send, "send_now": permissions.can_send, "resume": permissions.can_send,
        "retry_failed": permissions.can_send, "resend_unknown": permissions.can_send,
        "pause": checks.change_of("campaign"), "cancel": checks.change_of("campaign"),
        "test_send": checks.change_of("campaign"),
        "preflight": checks.view_of("campaign"), "start_preflight": checks.change_of("campaign"),
        "follow_up": checks.both(checks.add_of("campaign"), checks.view_of("campaign")),
        "stats": checks.view_of("campaign"),
        "delivery_logs": checks.view_of("deliverylog"),
        "recipients": checks.view_of("recipient"), "import_recipients": checks.change_of("campaign"),
    }

    def get_queryset(self):
        campaigns = Campaign.objects.all()
        if self.action == "list":
            wanted = self.request.query_params.get("status")
            if wanted:
                if wanted not in Campaign.Status.values:
                    raise ValidationError({"status": [f"One of: {', '.join(Campaign.Status.values)}."]})
                campaigns = campaigns.filter(status=wanted)
            if self.request.query_params.get("search"):
                campaigns = campaigns.filter(name__icontains=self.request.query_params["search"])
        return campaigns

    def perform_create(self, serializer):
        serializer.save(created_by=self.request.user)

    def perform_update(self, serializer):
        with transaction.atomic():
            campaign = Campaign.objects.select_for_update().get(pk=serializer.instance.pk)
            if not campaign.is_editable:
                raise CampaignError(f"Campaign #{campaign.pk} cannot be changed: it is "
                                    f"{campaign.get_status_display().lower()}; only a draft or scheduled campaign can.")
            serializer.save()

    def perform_destroy(self, campaign):
        if not Campaign.objects.filter(NEVER_STARTED, pk=campaign.pk).delete()[0]:
            raise CampaignError(f"Campaign #{campaign.pk} cannot be deleted: it has started sending, so its delivery "
                                "logs are the record of who was mailed (archive it instead).")

    # --- actions ---------------------------------------------------------------------------------

    @extend_schema(request=s.ScheduleSerializer, responses=s.MessageSerializer)
    @action(detail=True, methods=["post"])
    def schedule(self, request, pk=None):
        campaign = self.get_object()
        form = s.ScheduleSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return message(services.schedule(campaign.pk, form.validated_data["at"], user_id=request.user.pk), campaign)

    @NO_BODY
    @action(detail=True, methods=["post"], url_path="send-now")
    def send_now(self, request, pk=None):
        campaign = self.get_object()
        return message(services.send_now(campaign.pk, user_id=request.user.pk), campaign)

    @NO_BODY
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        campaign = self.get_object()
        return message(services.pause(campaign.pk), campaign)

    @NO_BODY
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        campaign = self.get_object()
        return message(services.resume(campaign.pk), campaign)

    @NO_BODY
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        campaign = self.get_object()
        return message(services.cancel(campaign.pk), campaign)

    @NO_BODY
    @action(detail=True, methods=["post"], url_path="retry-failed")
    def retry_failed(self, request, pk=None):
        campaign = self.get_object()
        return message(services.retry_failed(campaign.pk), campaign)

    @NO_BODY
    @action(detail=True, methods=["post"], url_path="resend-unknown")
    def resend_unknown(self, request, pk=None):
        campaign = self.get_object()
        return message(services.resend_unknown(campaign.pk), campaign)

    @extend_schema(request=s.TestSendSerializer, responses={
        200: s.MessageSerializer, 503: OpenApiResponse(description="The provider could not be reached.")})
    @action(detail=True, methods=["post"], url_path="test-send")
    def test_send(self, request, pk=None):
        campaign = self.get_object()
        form = s.TestSendSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        try:
            text = services.send_test_email(campaign.pk, form.validated_data["addresses"], user_id=request.user.pk,
                                            with_recipient_data=permissions.can_export(request.user, campaign),
                                            recipient=form.validated_data["recipient"])
        except ProviderError as error:
            return Response({"code": "provider_unavailable", "message": f"Test email not sent: {error}",
                             "errors": {}}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return message(text)

    @extend_schema(request=None, responses={200: s.PreflightSerializer, 404: OpenApiResponse(
        description="No preflight was run yet.")})
    @action(detail=True, methods=["get"])
    def preflight(self, request, pk=None):
        run = preflight.latest_run(self.get_object())
        if run is None:
            raise Http404("No preflight was run for this campaign yet: POST to start one.")
        return Response(s.PreflightSerializer(run).data)

    @extend_schema(request=None, responses={202: s.PreflightSerializer})
    @preflight.mapping.post
    def start_preflight(self, request, pk=None):
        campaign = self.get_object()
        if not campaign.is_editable:
            raise CampaignError(f"Campaign #{campaign.pk} has started sending: a preflight checks a campaign before.")
        return Response(s.PreflightSerializer(preflight.start_preflight(campaign, request.user)).data,
                        status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.FollowUpSerializer, responses={201: s.CampaignSerializer})
    @action(detail=True, methods=["post"], url_path="follow-up")
    def follow_up(self, request, pk=None):
        campaign = self.get_object()
        form = s.FollowUpSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        made = follow_ups.create_follow_up(campaign.pk, form.validated_data["group"], form.validated_data.get("link"),
                                           created_by=request.user)
        return Response(s.CampaignSerializer(made.campaign).data, status=status.HTTP_201_CREATED)

    # --- results ---------------------------------------------------------------------------------

    @extend_schema(responses=s.StatsSerializer)
    @action(detail=True, methods=["get"])
    def stats(self, request, pk=None):
        campaign = self.get_object()
        figures = stats.campaign_figures(campaign)
        if campaign.started_at is None:  # before the start, the audience is counted (campaigns.audience.plan)
            figures["audience"] = plan.audience(campaign).size
        return Response(figures)

    @extend_schema(
        parameters=[OpenApiParameter("status", str, enum=[v for v, _ in DeliveryLog.Status.choices]),
                    OpenApiParameter("page_size", int)],
        responses={(200, "application/json"): s.DeliveryLogSerializer(many=True),
                   (200, "text/csv"): OpenApiTypes.STR})
    @action(detail=True, methods=["get"], url_path="delivery-logs",
            renderer_classes=[renderers.JSONRenderer, CsvRenderer], pagination_class=ByIdCursor)
    def delivery_logs(self, request, pk=None):
        campaign = self.get_object()
        wanted = request.query_params.get("status")
        if wanted and wanted not in DeliveryLog.Status.values:
            raise ValidationError({"status": [f"One of: {', '.join(DeliveryLog.Status.values)}."]})
        if request.accepted_renderer.format == "csv":
            if not permissions.can_export(request.user, campaign):
                self.permission_denied(request, "Exporting delivery logs needs the export_recipients permission.")
            response = StreamingHttpResponse(delivery_log_rows(campaign.pk, wanted),
                                             content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.pk}-delivery-logs.csv"'
            return response
        logs = DeliveryLog.objects.filter(campaign_id=campaign.pk)
        if wanted:
            logs = logs.filter(status=wanted)
        page = self.paginate_queryset(logs)
        return self.get_paginated_response(s.DeliveryLogSerializer(page, many=True).data)

    # --- recipients ------------------------------------------------------------------------------

    @extend_schema(responses=s.RecipientSerializer(many=True), parameters=[OpenApiParameter("page_size", int)])
    @action(detail=True, methods=["get"], pagination_class=ByIdCursor,
            parser_classes=[parsers.JSONParser, parsers.MultiPartParser, SpreadsheetParser])
    def recipients(self, request, pk=None):
        campaign = self.get_object()
        page = self.paginate_queryset(Recipient.objects.filter(campaign_id=campaign.pk))
        return self.get_paginated_response(s.RecipientSerializer(page, many=True).data)

    @extend_schema(
        request={"application/json": s.JsonRowsSerializer, "multipart/form-data": s.ImportFileSerializer,
                 "text/csv": OpenApiTypes.BINARY,
                 "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": OpenApiTypes.BINARY},
        parameters=[OpenApiParameter("sheet", str, description="Workbooks: the sheet to read (raw bodies)."),
                    OpenApiParameter("check_mx", bool, description="Check each domain's MX (raw bodies).")],
        responses={202: s.RecipientImportSerializer})
    @recipients.mapping.post
    def import_recipients(self, request, pk=None):
        campaign = self.get_object()
        uploads.check_importable(campaign)
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.IMPORT_MAX_UPLOAD_MB * 2**20:
            raise ValidationError({"file": [f"The body is larger than the {settings.IMPORT_MAX_UPLOAD_MB} MB limit."]})
        file, name, sheet, check_mx = self._upload(request)
        try:
            record = uploads.queue_import(request.user, campaign, file, name, sheet, check_mx)
        finally:
            file.close()  # a raw body's temporary file (storage may have moved it; close() allows that)
        # New recipients change who a scheduled campaign goes to: a sender schedules it again (as in the admin).
        services.unschedule_after_change(campaign.pk, request.user.pk, "the recipients (an import)")
        return Response(s.RecipientImportSerializer(record, context={"request": request}).data,
                        status=status.HTTP_202_ACCEPTED)

    def _upload(self, request):
        kind = (request.content_type or "").split(";")[0].strip().lower()
        if kind == "application/json":
            form = s.JsonRowsSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            return rows_as_csv(form.validated_data["rows"]), "api-rows.csv", "", form.validated_data["check_mx"]
        if kind == "multipart/form-data":
            form = s.ImportFileSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            upload = form.validated_data["file"]
            if not upload.name.lower().endswith((".csv", ".txt", ".tsv", ".xlsx", ".xls")):
                raise ValidationError({"file": ["Upload a .csv, .xlsx or .xls file."]})
            return upload, Path(upload.name).name, form.validated_data["sheet"], form.validated_data["check_mx"]
        upload = request.data.get("file") if hasattr(request.data, "get") else None
        if upload is None:
            raise ValidationError({"file": ["Send a CSV, XLSX or XLS body, multipart/form-data or JSON rows."]})
        check_mx = request.query_params.get("check_mx", "").lower() in ("1", "true", "yes")
        return upload, upload.name, request.query_params.get("sheet", ""), check_mx


def rows_as_csv(rows):
    """JSON rows as a CSV file for the importer: every key any row has is a column, in first-seen order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(column) is None else str(row.get(column)) for column in columns])
    return ContentFile(text.getvalue().encode(), name="api-rows.csv")


class ImportViewSet(mixins.RetrieveModelMixin, ApiViewSet):
    """A recipient import's status and report (it runs in the background)."""

    queryset = RecipientImport.objects.select_related("campaign")
    serializer_class = s.RecipientImportSerializer
    checks = {"retrieve": checks.both(checks.view_of("recipientimport"), checks.view_of("campaign")),
              "rejected_rows": checks.both(checks.view_of("recipientimport"), checks.view_of("campaign"))}

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"], url_path="rejected-rows", renderer_classes=[CsvRenderer,
                                                                                        renderers.JSONRenderer])
    def rejected_rows(self, request, pk=None):
        record = self.get_object()
        if not record.rejected_file:
            raise Http404("This import rejected no rows.")
        return FileResponse(record.rejected_file.open("rb"), as_attachment=True, content_type="text/csv",
                            filename=f"rejected-rows-{Path(record.original_name).stem}.csv")


class SuppressionViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, mixins.RetrieveModelMixin,
                         mixins.DestroyModelMixin, ApiViewSet):
    """The suppression list: addresses never mailed again."""

    queryset = Suppression.objects.all()
    serializer_class = s.SuppressionSerializer
    pagination_class = NewestFirstCursor
    checks = {"list": checks.view_of("suppression"), "retrieve": checks.view_of("suppression"),
              "create": permissions.can_manage_suppressions, "destroy": permissions.can_manage_suppressions}

    def perform_create(self, serializer):
        data = serializer.validated_data
        if not suppression.suppress(data["email"], data.get("reason") or Suppression.Reason.MANUAL,
                                    data.get("source") or f"API, user {self.request.user.pk}"):
            raise CampaignError(f"{data['email']} is already suppressed.")
        serializer.instance = Suppression.objects.get(email=data["email"])


class SendingAccountViewSet(viewsets.ModelViewSet, ApiViewSet):
    """Sending accounts; their secrets are write-only."""

    queryset = SendingAccount.objects.all()
    serializer_class = s.SendingAccountSerializer
    pagination_class = ByIdCursor
    checks = {"list": checks.view_of("sendingaccount"), "retrieve": checks.view_of("sendingaccount"),
              "create": checks.add_of("sendingaccount"), "update": checks.change_of("sendingaccount"),
              "partial_update": checks.change_of("sendingaccount"), "destroy": checks.delete_of("sendingaccount")}

    def perform_destroy(self, account):
        if account.pools.exists() or account.usage.exists():
            raise CampaignError(f"Sending account {account.pk} is in a pool or has sent mail: disable it instead.")
        account.delete()


class SendingPoolViewSet(viewsets.ModelViewSet, ApiViewSet):
    queryset = SendingPool.objects.prefetch_related("accounts")
    serializer_class = s.SendingPoolSerializer
    pagination_class = ByIdCursor
    checks = {"list": checks.view_of("sendingpool"), "retrieve": checks.view_of("sendingpool"),
              "create": checks.add_of("sendingpool"), "update": checks.change_of("sendingpool"),
              "partial_update": checks.change_of("sendingpool"), "destroy": checks.delete_of("sendingpool")}

    def perform_destroy(self, pool):
        if pool.campaigns.exists():
            raise CampaignError(f"Sending pool {pool.pk} is used by campaigns: it cannot be deleted.")
        pool.delete()


class VariantViewSet(viewsets.ModelViewSet, ApiViewSet):
    """A campaign's A/B variants (two to four), changeable while the campaign is editable."""

    serializer_class = s.VariantSerializer
    pagination_class = None
    checks = {"list": checks.view_of("campaign"), "retrieve": checks.view_of("campaign"),
              "create": checks.change_of("campaign"), "update": checks.change_of("campaign"),
              "partial_update": checks.change_of("campaign"), "destroy": checks.change_of("campaign")}

    def campaign(self):
        campaign = Campaign.objects.filter(pk=self.kwargs["campaign_pk"]).first()
        if campaign is None:
            raise Http404("No such campaign.")
        return campaign

    def get_queryset(self):
        return CampaignVariant.objects.filter(campaign_id=self.kwargs.get("campaign_pk"))

    def editable_campaign(self):
        campaign = self.campaign()
        if not campaign.is_editable:
            raise CampaignError(f"Campaign #{campaign.pk} has started sending: its variants cannot change.")
        return campaign

    def perform_create(self, serializer):
        campaign = self.editable_campaign()
        if CampaignVariant.objects.filter(campaign=campaign, letter=serializer.validated_data["letter"]).exists():
            raise ValidationError({"letter": ["This campaign already has this variant."]})
        serializer.save(campaign=campaign)

    def perform_update(self, serializer):
        self.editable_campaign()
        serializer.save()

    def perform_destroy(self, variant):
        self.editable_campaign()
        variant.delete()


class WebhookEndpointViewSet(viewsets.ModelViewSet, ApiViewSet):
    """Outbound webhook endpoints: the signing secret is in the create's answer only."""

    queryset = WebhookEndpoint.objects.all()
    serializer_class = s.WebhookEndpointSerializer
    pagination_class = ByIdCursor
    checks = {"list": checks.view_of("webhookendpoint"), "retrieve": checks.view_of("webhookendpoint"),
              "create": permissions.can_manage_webhooks, "update": permissions.can_manage_webhooks,
              "partial_update": permissions.can_manage_webhooks, "destroy": permissions.can_manage_webhooks}

    @extend_schema(responses={201: s.NewWebhookEndpointSerializer})
    def create(self, request, *args, **kwargs):
        form = self.get_serializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        endpoint, secret = endpoints.create(request.user, data["url"], data["events"], data.get("description", ""),
                                            data.get("enabled", True))
        return Response({**s.WebhookEndpointSerializer(endpoint).data, "secret": secret}, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        serializer.instance = endpoints.update(serializer.instance, **serializer.validated_data)


class WebhookMessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    """What was sent to the endpoints, each attempt with its answer; replay sends a message again."""

    queryset = WebhookMessage.objects.prefetch_related("attempt_log")
    serializer_class = s.WebhookMessageSerializer
    pagination_class = NewestFirstCursor
    checks = {"list": checks.view_of("webhookendpoint"), "retrieve": checks.view_of("webhookendpoint"),
              "replay": permissions.can_manage_webhooks}

    @extend_schema(request=None, responses=s.MessageSerializer)
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        message = self.get_object()
        endpoints.replay([message.pk])
        return Response({"message": f"Webhook message {message.webhook_id} is sent again now."})
