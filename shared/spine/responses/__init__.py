"""The Responses API: calls translated onto chat, and the responses kept for
`previous_response_id`."""
