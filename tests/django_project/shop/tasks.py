"""The shop's tasks, as any Django app writes them; the import works on both lines."""

import asyncio
import sys
import time
from pathlib import Path

try:
    from django.tasks import task
except ImportError:  # Django before 6: the django-tasks backport
    from django_tasks import task

from .models import Order


class PaymentDeclined(Exception):
    pass


@task
def fulfil_order(order_id):
    """Needs the order's row: it exists only once the view's transaction has committed."""
    order = Order.objects.get(pk=order_id)
    order.fulfilled = True
    order.save()
    return {"order": order.pk, "item": order.item, "fulfilled": True}


@task(takes_context=True)
def charge_card(context, order_id, card):
    raise PaymentDeclined(f"attempt {context.attempt}: card {card} declined for order {order_id}")


@task(takes_context=True)
def pack_parcel(context, marker):
    """Its first attempt says it started, then hangs (its worker is killed); later ones
    return at once."""
    if context.attempt == 1:
        Path(marker).write_text(context.task_result.id)
        time.sleep(120)
    return {"packed_on_attempt": context.attempt, "worker_ids": len(context.task_result.worker_ids)}


@task
async def add(a, b):
    await asyncio.sleep(0)
    return a + b


@task
def close_shop(reason):
    """Exits, as code that calls sys.exit does: SystemExit, a BaseException and a builtin."""
    sys.exit(reason)
