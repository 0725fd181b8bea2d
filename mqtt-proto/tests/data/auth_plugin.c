/*
 * A tiny mosquitto 2.0 plugin (plugin API v5) implementing a two-step "enhanced
 * authentication" exchange (MQTT 5, 4.12), so that capture.py can record real AUTH
 * packets sent by the broker. Only used by capture.py; the tests read the stored captures.
 *
 *   CONNECT (method "petrel-challenge")  -> AUTH 0x18 (data "challenge")
 *   AUTH 0x18 (data "response")          -> CONNACK 0x00
 *   AUTH 0x19 (re-authentication)        -> AUTH 0x18 (data "challenge")
 *   AUTH 0x18 (data "response")          -> AUTH 0x00
 *
 * Build: gcc -shared -fPIC -o auth_plugin.so auth_plugin.c   (needs mosquitto-dev)
 */
#include <string.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

static mosquitto_plugin_id_t *plugin_id;
static const char METHOD[] = "petrel-challenge";

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	(void)supported_version_count;
	(void)supported_versions;
	return 5;
}

static int auth_start(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_extended_auth *ed = event_data;
	(void)event;
	(void)userdata;
	if (!ed->auth_method || strcmp(ed->auth_method, METHOD) != 0) {
		return MOSQ_ERR_NOT_SUPPORTED;
	}
	ed->data_out = mosquitto_strdup("challenge");
	ed->data_out_len = 9;
	return MOSQ_ERR_AUTH_CONTINUE;
}

static int auth_continue(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_extended_auth *ed = event_data;
	(void)event;
	(void)userdata;
	/* mosquitto has already checked the method against the one of the CONNECT (and
	 * 2.0.11 leaves ed->auth_method unset here). */
	if (ed->data_in_len == 8 && memcmp(ed->data_in, "response", 8) == 0) {
		return MOSQ_ERR_SUCCESS;
	}
	return MOSQ_ERR_AUTH;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
			  struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	plugin_id = identifier;
	mosquitto_callback_register(plugin_id, MOSQ_EVT_EXT_AUTH_START, auth_start, NULL, NULL);
	mosquitto_callback_register(plugin_id, MOSQ_EVT_EXT_AUTH_CONTINUE, auth_continue, NULL, NULL);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_EXT_AUTH_START, auth_start, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_EXT_AUTH_CONTINUE, auth_continue, NULL);
	return MOSQ_ERR_SUCCESS;
}
