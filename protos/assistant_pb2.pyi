from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RoutePreference(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTE_PREFERENCE_AUTO: _ClassVar[RoutePreference]
    ROUTE_PREFERENCE_SMALL: _ClassVar[RoutePreference]
    ROUTE_PREFERENCE_BIG: _ClassVar[RoutePreference]

class NetworkType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NETWORK_TYPE_UNKNOWN: _ClassVar[NetworkType]
    NETWORK_TYPE_WIFI: _ClassVar[NetworkType]
    NETWORK_TYPE_CELLULAR: _ClassVar[NetworkType]
    NETWORK_TYPE_ETHERNET: _ClassVar[NetworkType]
    NETWORK_TYPE_OFFLINE: _ClassVar[NetworkType]

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_SMALL: _ClassVar[Tier]
    TIER_BIG: _ClassVar[Tier]
    TIER_NONE: _ClassVar[Tier]
ROUTE_PREFERENCE_AUTO: RoutePreference
ROUTE_PREFERENCE_SMALL: RoutePreference
ROUTE_PREFERENCE_BIG: RoutePreference
NETWORK_TYPE_UNKNOWN: NetworkType
NETWORK_TYPE_WIFI: NetworkType
NETWORK_TYPE_CELLULAR: NetworkType
NETWORK_TYPE_ETHERNET: NetworkType
NETWORK_TYPE_OFFLINE: NetworkType
TIER_UNSPECIFIED: Tier
TIER_SMALL: Tier
TIER_BIG: Tier
TIER_NONE: Tier

class DeviceMessage(_message.Message):
    __slots__ = ("query", "cancel")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    query: Query
    cancel: Cancel
    def __init__(self, query: _Optional[_Union[Query, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ...) -> None: ...

class Location(_message.Message):
    __slots__ = ("latitude", "longitude", "place_name")
    LATITUDE_FIELD_NUMBER: _ClassVar[int]
    LONGITUDE_FIELD_NUMBER: _ClassVar[int]
    PLACE_NAME_FIELD_NUMBER: _ClassVar[int]
    latitude: float
    longitude: float
    place_name: str
    def __init__(self, latitude: _Optional[float] = ..., longitude: _Optional[float] = ..., place_name: _Optional[str] = ...) -> None: ...

class DeviceContext(_message.Message):
    __slots__ = ("location", "time_zone", "locale", "battery_percent", "network", "route_preference")
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    BATTERY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    ROUTE_PREFERENCE_FIELD_NUMBER: _ClassVar[int]
    location: Location
    time_zone: str
    locale: str
    battery_percent: int
    network: NetworkType
    route_preference: RoutePreference
    def __init__(self, location: _Optional[_Union[Location, _Mapping]] = ..., time_zone: _Optional[str] = ..., locale: _Optional[str] = ..., battery_percent: _Optional[int] = ..., network: _Optional[_Union[NetworkType, str]] = ..., route_preference: _Optional[_Union[RoutePreference, str]] = ...) -> None: ...

class SlotValue(_message.Message):
    __slots__ = ("text", "integer", "number", "flag")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    text: str
    integer: int
    number: float
    flag: bool
    def __init__(self, text: _Optional[str] = ..., integer: _Optional[int] = ..., number: _Optional[float] = ..., flag: _Optional[bool] = ...) -> None: ...

class Intent(_message.Message):
    __slots__ = ("name", "slots")
    class SlotsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: SlotValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[SlotValue, _Mapping]] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    slots: _containers.MessageMap[str, SlotValue]
    def __init__(self, name: _Optional[str] = ..., slots: _Optional[_Mapping[str, SlotValue]] = ...) -> None: ...

class Query(_message.Message):
    __slots__ = ("turn_id", "conversation_id", "text", "language", "intent", "context")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    conversation_id: str
    text: str
    language: str
    intent: Intent
    context: DeviceContext
    def __init__(self, turn_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., text: _Optional[str] = ..., language: _Optional[str] = ..., intent: _Optional[_Union[Intent, _Mapping]] = ..., context: _Optional[_Union[DeviceContext, _Mapping]] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("turn_id",)
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    def __init__(self, turn_id: _Optional[str] = ...) -> None: ...

class GatewayMessage(_message.Message):
    __slots__ = ("turn_id", "route", "tool", "delta", "end", "error")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    turn_id: str
    route: RouteDecision
    tool: ToolEvent
    delta: TextDelta
    end: TurnEnd
    error: Error
    def __init__(self, turn_id: _Optional[str] = ..., route: _Optional[_Union[RouteDecision, _Mapping]] = ..., tool: _Optional[_Union[ToolEvent, _Mapping]] = ..., delta: _Optional[_Union[TextDelta, _Mapping]] = ..., end: _Optional[_Union[TurnEnd, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class RouteDecision(_message.Message):
    __slots__ = ("tier", "model", "reason", "failover")
    TIER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_FIELD_NUMBER: _ClassVar[int]
    tier: Tier
    model: str
    reason: str
    failover: bool
    def __init__(self, tier: _Optional[_Union[Tier, str]] = ..., model: _Optional[str] = ..., reason: _Optional[str] = ..., failover: _Optional[bool] = ...) -> None: ...

class ToolEvent(_message.Message):
    __slots__ = ("tool", "phase", "status")
    class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PHASE_UNSPECIFIED: _ClassVar[ToolEvent.Phase]
        PHASE_STARTED: _ClassVar[ToolEvent.Phase]
        PHASE_FINISHED: _ClassVar[ToolEvent.Phase]
        PHASE_FAILED: _ClassVar[ToolEvent.Phase]
    PHASE_UNSPECIFIED: ToolEvent.Phase
    PHASE_STARTED: ToolEvent.Phase
    PHASE_FINISHED: ToolEvent.Phase
    PHASE_FAILED: ToolEvent.Phase
    TOOL_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    tool: str
    phase: ToolEvent.Phase
    status: str
    def __init__(self, tool: _Optional[str] = ..., phase: _Optional[_Union[ToolEvent.Phase, str]] = ..., status: _Optional[str] = ...) -> None: ...

class TextDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class StageTiming(_message.Message):
    __slots__ = ("stage", "duration_ms")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    duration_ms: float
    def __init__(self, stage: _Optional[str] = ..., duration_ms: _Optional[float] = ...) -> None: ...

class TurnEnd(_message.Message):
    __slots__ = ("finish_reason", "tokens_in", "tokens_out", "timings")
    class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        FINISH_REASON_UNSPECIFIED: _ClassVar[TurnEnd.FinishReason]
        FINISH_REASON_STOP: _ClassVar[TurnEnd.FinishReason]
        FINISH_REASON_LENGTH: _ClassVar[TurnEnd.FinishReason]
        FINISH_REASON_CANCELLED: _ClassVar[TurnEnd.FinishReason]
        FINISH_REASON_ERROR: _ClassVar[TurnEnd.FinishReason]
    FINISH_REASON_UNSPECIFIED: TurnEnd.FinishReason
    FINISH_REASON_STOP: TurnEnd.FinishReason
    FINISH_REASON_LENGTH: TurnEnd.FinishReason
    FINISH_REASON_CANCELLED: TurnEnd.FinishReason
    FINISH_REASON_ERROR: TurnEnd.FinishReason
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    TOKENS_IN_FIELD_NUMBER: _ClassVar[int]
    TOKENS_OUT_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    finish_reason: TurnEnd.FinishReason
    tokens_in: int
    tokens_out: int
    timings: _containers.RepeatedCompositeFieldContainer[StageTiming]
    def __init__(self, finish_reason: _Optional[_Union[TurnEnd.FinishReason, str]] = ..., tokens_in: _Optional[int] = ..., tokens_out: _Optional[int] = ..., timings: _Optional[_Iterable[_Union[StageTiming, _Mapping]]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "spoken", "retryable")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SPOKEN_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    spoken: str
    retryable: bool
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., spoken: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...
