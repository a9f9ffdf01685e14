"""VoxLens's speech stages as Wyoming services, so Home Assistant's Assist can use them.

One module per service (stt, tts, wake), built on the `wyoming` package's events and
event handler; `audio` converts whatever a client sends into the device's 16 kHz mono
int16, `server` runs a handler per connection, `info` says what each service offers.
"""
