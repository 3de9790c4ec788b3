from django.db import transaction
from django.http import HttpResponseBadRequest, JsonResponse

from .models import Order
from .tasks import fulfil_order


def place_order(request):
    """Saves an order and queues its fulfilment once the transaction has committed; a
    request with ``fail`` rolls back, and then nothing is queued."""
    queued = []
    try:
        with transaction.atomic():
            order = Order.objects.create(item=request.POST["item"])
            transaction.on_commit(lambda: queued.append(fulfil_order.enqueue(order.pk)))
            if "fail" in request.POST:
                raise ValueError("the payment form was incomplete")
    except ValueError as error:
        return HttpResponseBadRequest(str(error))
    return JsonResponse({"order": order.pk, "task": queued[0].id, "status": queued[0].status})
