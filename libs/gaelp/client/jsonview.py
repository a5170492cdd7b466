"""Messages as JSON objects a script can use: field names as in the protos, numbers as numbers.

protobuf's JSON mapping writes 64-bit integers as strings and enums as names; here integers stay
integers and the Phase enum keeps its name.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def _numbers(message: Message, data: dict[str, Any]) -> dict[str, Any]:
    for field in message.DESCRIPTOR.fields:
        if field.name not in data:
            continue
        value = getattr(message, field.name)
        repeated = field.is_repeated
        if field.type in _INT64:
            data[field.name] = list(value) if repeated else int(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not field.message_type.GetOptions().map_entry:  # type: ignore[union-attr]  # set for message fields
            if repeated:
                data[field.name] = [_numbers(item, entry) for item, entry in zip(value, data[field.name],
                                                                                  strict=True)]
            elif isinstance(data[field.name], dict):
                data[field.name] = _numbers(value, data[field.name])
    return data


def message_json(message: Message) -> dict[str, Any]:
    data = MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return _numbers(message, data)
