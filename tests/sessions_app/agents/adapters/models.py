"""Offline test models written against each framework's own model interface (no network),
shared by the adapters' unit tests and their e2e tests."""

from __future__ import annotations

import itertools


def scripted_agents_model(script, usage=None, model_name="scripted"):
    """An OpenAI Agents SDK ``Model`` streaming Responses events from a script: each call
    streams the next list of items, ``("text", [deltas])``, ``("reasoning", [deltas])`` or
    ``("call", name, call_id, [argument deltas])``; a callable item is awaited first (a pause
    the test controls). ``model.inputs`` keeps what each call was given. ``usage``: the
    ``(input_tokens, output_tokens)`` each call's completed response reports (default none),
    for a model named ``model_name``."""
    from agents.models.interface import Model
    from openai.types.responses import (
        Response,
        ResponseCompletedEvent,
        ResponseFunctionCallArgumentsDeltaEvent,
        ResponseFunctionToolCall,
        ResponseOutputItemAddedEvent,
        ResponseOutputItemDoneEvent,
        ResponseOutputMessage,
        ResponseOutputText,
        ResponseReasoningItem,
        ResponseReasoningSummaryTextDeltaEvent,
        ResponseTextDeltaEvent,
        ResponseUsage,
    )
    from openai.types.responses.response_reasoning_item import Summary
    from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

    class ScriptedModel(Model):
        def __init__(self, script):
            self.script = list(script)
            self.inputs = []
            self.seq = itertools.count()

        async def get_response(self, *args, **kwargs):
            """The streamed script's completed response at once (an agent used as a tool
            without ``on_stream`` is run this way)."""
            from agents.items import ModelResponse
            from agents.usage import Usage

            async for event in self.stream_response(*args, **kwargs):
                response = event.response if event.type == "response.completed" else None
            tokens = response.usage
            counted = Usage(requests=1, input_tokens=tokens.input_tokens,
                            output_tokens=tokens.output_tokens,
                            total_tokens=tokens.total_tokens) if tokens else Usage()  # fmt: skip
            return ModelResponse(output=response.output, usage=counted, response_id=response.id)

        async def stream_response(self, system_instructions, input, *args, **kwargs):
            self.inputs.append(input)
            output = []
            for index, item in enumerate(self.script.pop(0)):
                if callable(item):
                    await item()
                    continue
                kind, item_id = item[0], f"item-{next(self.seq)}"
                if kind == "text":
                    yield ResponseOutputItemAddedEvent(
                        type="response.output_item.added",
                        output_index=index,
                        sequence_number=next(self.seq),
                        item=ResponseOutputMessage(
                            id=item_id,
                            type="message",
                            role="assistant",
                            status="in_progress",
                            content=[],
                        ),
                    )
                    for delta in item[1]:
                        yield ResponseTextDeltaEvent(
                            type="response.output_text.delta",
                            item_id=item_id,
                            output_index=index,
                            content_index=0,
                            delta=delta,
                            logprobs=[],
                            sequence_number=next(self.seq),
                        )
                    done = ResponseOutputMessage(
                        id=item_id,
                        type="message",
                        role="assistant",
                        status="completed",
                        content=[
                            ResponseOutputText(
                                type="output_text", text="".join(item[1]), annotations=[]
                            )
                        ],
                    )
                elif kind == "reasoning":
                    yield ResponseOutputItemAddedEvent(
                        type="response.output_item.added",
                        output_index=index,
                        sequence_number=next(self.seq),
                        item=ResponseReasoningItem(id=item_id, type="reasoning", summary=[]),
                    )
                    for delta in item[1]:
                        yield ResponseReasoningSummaryTextDeltaEvent(
                            type="response.reasoning_summary_text.delta",
                            item_id=item_id,
                            output_index=index,
                            summary_index=0,
                            delta=delta,
                            sequence_number=next(self.seq),
                        )
                    done = ResponseReasoningItem(
                        id=item_id,
                        type="reasoning",
                        summary=[Summary(type="summary_text", text="".join(item[1]))],
                    )
                else:
                    _, name, call_id, deltas = item
                    yield ResponseOutputItemAddedEvent(
                        type="response.output_item.added",
                        output_index=index,
                        sequence_number=next(self.seq),
                        item=ResponseFunctionToolCall(
                            id=item_id,
                            type="function_call",
                            call_id=call_id,
                            name=name,
                            arguments="",
                        ),
                    )
                    for delta in deltas:
                        yield ResponseFunctionCallArgumentsDeltaEvent(
                            type="response.function_call_arguments.delta",
                            item_id=item_id,
                            output_index=index,
                            delta=delta,
                            sequence_number=next(self.seq),
                        )
                    done = ResponseFunctionToolCall(
                        id=item_id,
                        type="function_call",
                        call_id=call_id,
                        name=name,
                        arguments="".join(deltas),
                    )
                yield ResponseOutputItemDoneEvent(
                    type="response.output_item.done",
                    output_index=index,
                    item=done,
                    sequence_number=next(self.seq),
                )
                output.append(done)
            tokens = None
            if usage is not None:
                tokens = ResponseUsage(
                    input_tokens=usage[0],
                    output_tokens=usage[1],
                    total_tokens=sum(usage),
                    input_tokens_details=InputTokensDetails(cached_tokens=0, cache_write_tokens=0),
                    output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
                )
            response = Response(
                id=f"resp-{next(self.seq)}",
                created_at=0,
                model=model_name,
                usage=tokens,
                object="response",
                output=output,
                parallel_tool_calls=True,
                tool_choice="auto",
                tools=[],
            )
            yield ResponseCompletedEvent(
                type="response.completed", response=response, sequence_number=next(self.seq)
            )

    return ScriptedModel(script)


def scripted_chat_model(script):
    """A LangChain chat model (``BaseChatModel``) that streams the next scripted list of
    ``AIMessageChunk``s at each call."""
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.outputs import ChatGenerationChunk

    class Scripted(BaseChatModel):
        script: list

        @property
        def _llm_type(self):
            return "scripted"

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            raise NotImplementedError("streams only")

        async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
            for chunk in self.script.pop(0):
                yield ChatGenerationChunk(message=chunk)

    return Scripted(script=script)
