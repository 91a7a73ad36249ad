#include "svc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

volatile sig_atomic_t svc_quit;

static void
on_signal(int sig)
{
	(void)sig;
	svc_quit = 1;
}

void
svc_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

void
svc_parse(const char *svc, const char *summary, const struct opt *opts, const struct svc_opts *so,
    int argc, char **argv)
{
	char usage[128], err[256];

	snprintf(usage, sizeof(usage), "%s [options]", svc);
	switch (config_parse(usage, summary, opts, argc, argv, NULL, err, sizeof(err))) {
	case CONFIG_OK:
		break;
	case CONFIG_EXIT:
		exit(0);
	case CONFIG_ERROR:
		fprintf(stderr, "%s: %s\n", svc, err);
		exit(2);
	}
	log_init(svc, so->verbose > 0 ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
}

struct mq *
svc_mq_new(const struct svc_opts *so, mq_handler handler, void *arg)
{
	struct mq_config cfg;
	char url[256];
	char *password = NULL;
	const char *env;
	struct mq *mq;

	memset(&cfg, 0, sizeof(cfg));
	if (so->url != NULL)
		str_copy(url, sizeof(url), so->url);
	else {
		long port = 1883;
		if ((env = getenv("PIZZA_MQTT_PORT")) != NULL && env[0] != '\0' &&
		    parse_long(env, 1, 65535, &port) != 0)
			fatal("PIZZA_MQTT_PORT is not a port number", "value=%s", env);
		snprintf(url, sizeof(url), "tcp://127.0.0.1:%ld", port);
	}
	if (so->password_file != NULL) {
		if ((password = file_read_small(so->password_file, 1024)) == NULL)
			fatal("cannot read the MQTT password file", "path=%s err=\"%s\"", so->password_file,
			    strerror(errno));
	} else if ((env = getenv("PIZZA_MQTT_PASSWORD")) != NULL) {
		password = strdup(env);
	}
	cfg.url = url;
	cfg.client_id = so->client_id;
	cfg.username = so->user;
	cfg.password = password;
	cfg.clean_start = 0;
	cfg.cafile = so->cafile;
	cfg.certfile = so->certfile;
	cfg.keyfile = so->keyfile;
	cfg.session_expiry_s = (unsigned)so->session_expiry_s;
	mq = mq_new(&cfg, handler, arg);
	free(password);
	if (mq == NULL)
		fatal("cannot create the MQTT client", "url=%s", url);
	return mq;
}

void
svc_mq_connect(struct mq *mq, const struct svc_opts *so)
{
	char err[512];

	if (mq_connect(mq, (int)so->connect_timeout_ms, err, sizeof(err)) != 0) {
		char q[600];
		log_error("cannot start", "err=%s", log_quote(q, sizeof(q), err));
		mq_free(mq);
		exit(1);
	}
}
