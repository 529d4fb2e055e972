"""The bundled web client, served at ``/`` of the ops port."""
