"""Values the pure-core tests share: the chat limits of PROTOCOL.md section 8."""

CHAT_LIMITS = {
    "say": 15,
    "local": 20,
    "global": 10,
    "party": 30,
    "whisper": 5,
    "emote": 15,
    "pose": 15,
}
