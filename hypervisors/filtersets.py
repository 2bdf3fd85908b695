"""django-filter sets for the hypervisor API. Related objects are filtered by id,
never offered as choices: a choice list would name objects of other sites."""

from __future__ import annotations

import django_filters

from .choices import Health, HypervisorType, OperationKind, OperationStatus, VMStatus
from .models import Hypervisor, HypervisorOperation, VirtualMachine


class HypervisorFilterSet(django_filters.FilterSet):
    type = django_filters.ChoiceFilter(choices=HypervisorType.choices)
    health = django_filters.ChoiceFilter(choices=Health.choices)
    site = django_filters.CharFilter(field_name="site__slug", max_length=100)

    class Meta:
        model = Hypervisor
        fields = ("type", "health", "site")


class VirtualMachineFilterSet(django_filters.FilterSet):
    hypervisor = django_filters.NumberFilter(
        field_name="hypervisor_id", min_value=1, max_value=10**18
    )
    node = django_filters.NumberFilter(field_name="node_id", min_value=1, max_value=10**18)
    status = django_filters.ChoiceFilter(choices=VMStatus.choices)
    power = django_filters.CharFilter(max_length=16)
    managed = django_filters.BooleanFilter()

    class Meta:
        model = VirtualMachine
        fields = ("hypervisor", "node", "status", "power", "managed")


class OperationFilterSet(django_filters.FilterSet):
    hypervisor = django_filters.NumberFilter(
        field_name="hypervisor_id", min_value=1, max_value=10**18
    )
    vm = django_filters.NumberFilter(field_name="vm_id", min_value=1, max_value=10**18)
    kind = django_filters.ChoiceFilter(choices=OperationKind.choices)
    status = django_filters.ChoiceFilter(choices=OperationStatus.choices)

    class Meta:
        model = HypervisorOperation
        fields = ("hypervisor", "vm", "kind", "status")
