#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sqlite3.h>
#include <strings.h>

#include "log.h"
#include "token.h"
#include "topic.h"
#include "util.h"

static const char *
root(void)
{
	const char *r = getenv("PIZZA_ROOT");
	return r != NULL ? r : ".";
}

static const char *
bindir(void)
{
	const char *b = getenv("PIZZA_BIN");
	return b != NULL ? b : "./build/bin";
}

void
h_sleep(int ms)
{
	sleep_ms(ms);
}

/* 1 if port can be bound on loopback now. */
static int
bindable(int port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/*
 * A port to listen on, below the kernel's ephemeral range: a port the
 * kernel handed out with bind(0) came from that range, where any
 * process's outgoing connection could take it before our service bound it
 * (seen under make test with the bench's thousands of connections beside
 * it: "Address already in use").  Each port is given once per process.
 */
static int
free_port(void)
{
	static unsigned next;
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	unsigned lo = 20000, hi = 32767, span;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	int port = -1;

	if (f != NULL) {
		unsigned elo, ehi;
		if (fscanf(f, "%u %u", &elo, &ehi) == 2 && elo > 12000 && elo - 1 < hi)
			hi = elo - 1;
		fclose(f);
	}
	if (hi < lo + 1000)
		lo = hi - 1000;
	span = hi - lo + 1;
	pthread_mutex_lock(&lock);
	if (next == 0)
		next = (unsigned)getpid() * 7919u + (unsigned)mono_ms();
	for (unsigned i = 0; i < span && port < 0; i++) {
		int p = (int)(lo + next++ % span);
		if (bindable(p))
			port = p;
	}
	pthread_mutex_unlock(&lock);
	return port;
}

static int
port_open(int port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* fork+exec argv as uid/gid (when they are not ours: root only), stdout and stderr to log (appending). */
static pid_t
spawn_as(char *const argv[], const char *log, uid_t uid, gid_t gid)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		if (uid != getuid() && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) {
			fprintf(stderr, "cannot become uid %d: %s\n", (int)uid, strerror(errno));
			_exit(126);
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test (after setuid, which clears it) */
		close_range(3, ~0U, 0);            /* not the test's own broker connections */
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

/* fork+exec argv with stdout and stderr to log (appending). */
static pid_t
spawn(char *const argv[], const char *log)
{
	return spawn_as(argv, log, getuid(), getgid());
}

/* Waits for pid up to ms; SIGKILLs it after that. */
static void
reap(pid_t pid, int ms)
{
	int64_t deadline = mono_ms() + ms;
	int st;

	while (mono_ms() < deadline) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD))
			return;
		sleep_ms(10);
	}
	fprintf(stderr, "harness: pid %d did not stop in %d ms; killing it\n", (int)pid, ms);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

static int
broker_spawn(struct stack *s)
{
	char conf[600], log[600], mosq[] = "/usr/sbin/mosquitto";
	char *argv[] = { mosq, (char *)"-c", conf, NULL };
	int64_t deadline;

	snprintf(conf, sizeof(conf), "%s/mosquitto.conf", s->dir);
	snprintf(log, sizeof(log), "%s/mosquitto.log", s->dir);
	s->broker = spawn(argv, log);
	deadline = mono_ms() + 5000;
	while (mono_ms() < deadline) {
		if (port_open(s->port))
			return 0;
		if (waitpid(s->broker, NULL, WNOHANG) == s->broker) {
			s->broker = 0;
			return -1;
		}
		sleep_ms(20);
	}
	return -1;
}

static void
on_observed(void *arg, const struct mq_message *m)
{
	struct stack *s = arg;
	struct h_msg *x;

	pthread_mutex_lock(&s->lock);
	if (s->nmsgs == s->capmsgs) {
		size_t cap = s->capmsgs ? s->capmsgs * 2 : 1024;
		struct h_msg *n = realloc(s->msgs, cap * sizeof(*n));
		if (n == NULL) {
			pthread_mutex_unlock(&s->lock);
			return;
		}
		s->msgs = n;
		s->capmsgs = cap;
	}
	x = &s->msgs[s->nmsgs];
	memset(x, 0, sizeof(*x));
	x->topic = strdup(m->topic);
	x->payload = malloc(m->len + 1);
	memcpy(x->payload, m->payload, m->len);
	x->payload[m->len] = '\0';
	x->len = m->len;
	x->retained = m->retained;
	x->mono_ms = mono_ms();
	if (m->correlation != NULL) {
		x->corr = malloc(m->correlation_len + 1);
		memcpy(x->corr, m->correlation, m->correlation_len);
		x->corr[m->correlation_len] = '\0';
	}
	s->nmsgs++;
	pthread_mutex_unlock(&s->lock);
}

int
h_stack_start(struct stack *s, const char *name)
{
	char cmd[1600];
	static int seq;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	log_init("harness", LOG_LEVEL_WARN);
	snprintf(s->dir, sizeof(s->dir), "%s/build/test-run/%s-%d-%d", root(), name, (int)getpid(), seq++);
	for (int attempt = 0; attempt < 5; attempt++) {
		s->port = free_port();
		s->tls_port = free_port();
		s->ws_port = free_port();
		snprintf(cmd, sizeof(cmd),
		    "rm -rf '%s' && '%s/broker-config/stack' prepare '%s' %d %d '%s/build/test-run/certs' %d", s->dir,
		    root(), s->dir, s->port, s->tls_port, root(), s->ws_port);
		if (system(cmd) != 0) {
			fprintf(stderr, "harness: '%s' failed\n", cmd);
			return -1;
		}
		if (broker_spawn(s) == 0) {
			s->http_port = free_port();
			s->history_port = free_port();
			return 0;
		}
		fprintf(stderr, "harness: mosquitto did not start on port %d; trying another\n", s->port);
	}
	return -1;
}

int
h_free_port(void)
{
	return free_port();
}

void
h_broker_stop(struct stack *s)
{
	if (s->broker > 0) {
		kill(s->broker, SIGTERM);
		reap(s->broker, 10000);
		s->broker = 0;
	}
}

int
h_broker_start(struct stack *s)
{
	return broker_spawn(s);
}

/* libcurl sink appending to a NUL-terminated string. */
static size_t
h_append(char *data, size_t size, size_t n, void *arg)
{
	char **buf = arg;
	size_t old = *buf != NULL ? strlen(*buf) : 0, add = size * n;
	char *nb = realloc(*buf, old + add + 1);

	if (nb == NULL)
		return 0;
	memcpy(nb + old, data, add);
	nb[old + add] = '\0';
	*buf = nb;
	return add;
}

long
h_http(const char *method, const char *url, const char *const *headers, const char *body, struct h_reply *r)
{
	struct curl_slist *h = NULL;
	CURL *c = curl_easy_init();

	memset(r, 0, sizeof(*r));
	for (int i = 0; headers != NULL && headers[i] != NULL; i++)
		h = curl_slist_append(h, headers[i]);
	h = curl_slist_append(h, "Expect:");
	if (c != NULL) {
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
		if (body != NULL)
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_append);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
		curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, h_append);
		curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
		if (curl_easy_perform(c) == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
		curl_easy_cleanup(c);
	}
	curl_slist_free_all(h);
	if (r->body == NULL)
		r->body = strdup("");
	if (r->headers == NULL)
		r->headers = strdup("");
	return r->status;
}

void
h_reply_free(struct h_reply *r)
{
	free(r->body);
	free(r->headers);
	r->body = r->headers = NULL;
}

const char *
h_reply_header(const struct h_reply *r, const char *name, char *out, size_t n)
{
	size_t len = strlen(name);

	out[0] = '\0';
	for (const char *line = r->headers; line != NULL && *line != '\0';) {
		const char *end = strchr(line, '\n');
		size_t ll = end != NULL ? (size_t)(end - line) : strlen(line);

		if (ll > len + 1 && strncasecmp(line, name, len) == 0 && line[len] == ':') {
			const char *v = line + len + 1;
			while (*v == ' ')
				v++;
			ll -= (size_t)(v - line);
			while (ll > 0 && (v[ll - 1] == '\r' || v[ll - 1] == '\n'))
				ll--;
			snprintf(out, n, "%.*s", (int)ll, v);
			break;
		}
		line = end != NULL ? end + 1 : NULL;
	}
	return out;
}

int
h_http_get(const char *url, char **out)
{
	char cmd[700], buf[4096];
	size_t len = 0, cap = 0, n;
	char *body = NULL;
	int status = -1;
	FILE *p;

	/* the status code goes on a last line of its own */
	snprintf(cmd, sizeof(cmd), "curl -s -m 5 -w '\\n%%{http_code}' '%s'", url);
	if ((p = popen(cmd, "r")) == NULL)
		return -1;
	while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
		char *nb = realloc(body, cap = len + n + 1);
		if (nb == NULL)
			break;
		body = nb;
		memcpy(body + len, buf, n);
		len += n;
		body[len] = '\0';
	}
	pclose(p);
	(void)cap;
	if (body == NULL)
		body = strdup("");
	else {
		char *nl = strrchr(body, '\n');
		if (nl != NULL) {
			status = atoi(nl + 1);
			*nl = '\0';
		}
	}
	*out = body;
	return status;
}

int
h_broker_restart(struct stack *s)
{
	if (s->broker > 0) {
		kill(s->broker, SIGTERM);
		reap(s->broker, 10000);
		s->broker = 0;
	}
	return broker_spawn(s);
}

static int
is_service_with_db(const char *bin)
{
	return strcmp(bin, "order-service") == 0 || strcmp(bin, "order-history") == 0 || strcmp(bin, "notifier") == 0;
}

static int
count_in_file(const char *path, const char *needle)
{
	char *text = file_read_small(path, 1 << 24), *p = text;
	int n = 0;

	while (p != NULL && (p = strstr(p, needle)) != NULL) {
		n++;
		p += strlen(needle);
	}
	free(text);
	return n;
}

/* Spawns p from its saved argv and waits until its log shows one more msg="ready". */
static int
proc_start(struct stack *s, struct h_proc *p)
{
	int before = count_in_file(p->log, "msg=\"ready\"");
	int64_t deadline;

	(void)s;
	p->pid = spawn(p->argv, p->log);
	deadline = mono_ms() + 10000;
	while (mono_ms() < deadline) {
		if (count_in_file(p->log, "msg=\"ready\"") > before)
			return 0;
		if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
			fprintf(stderr, "harness: %s exited at start; see %s\n", p->name, p->log);
			p->pid = 0;
			return -1;
		}
		sleep_ms(20);
	}
	fprintf(stderr, "harness: %s not ready after 10 s; see %s\n", p->name, p->log);
	return -1;
}

int
h_service(struct stack *s, const char *name, const char *bin, ...)
{
	char path[600], url[64], pass[600], db[600], http[16], hist[64], cbsecret[600], toksecret[600], passwd[600];
	char histsecret[600], aclfile[600], adminsecret[600];
	char *argv[40];
	int argc = 0, idx;
	struct h_proc *p;
	va_list ap;
	const char *a;

	if (s->nprocs >= H_MAX_PROCS)
		return -1;
	idx = s->nprocs;
	p = &s->procs[idx];
	char log[sizeof(p->log)];

	snprintf(log, sizeof(log), "%s/%s.log", s->dir, name);
	memcpy(p->log, log, sizeof(log));
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(path, sizeof(path), "%s/%s", bindir(), bin);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", s->port);
	snprintf(pass, sizeof(pass), "%s/secrets/%s.pass", s->dir, bin);
	snprintf(db, sizeof(db), "%s/data/%s.db", s->dir, name);
	snprintf(cbsecret, sizeof(cbsecret), "%s/secrets/callback.secret", s->dir);
	snprintf(toksecret, sizeof(toksecret), "%s/secrets/token.secret", s->dir);
	snprintf(passwd, sizeof(passwd), "%s/passwd", s->dir);
	snprintf(aclfile, sizeof(aclfile), "%s/broker-config/acl", root());
	snprintf(adminsecret, sizeof(adminsecret), "%s/secrets/admin.secret", s->dir);
	snprintf(histsecret, sizeof(histsecret), "%s/secrets/history.secret", s->dir);
	argv[argc++] = path;
	argv[argc++] = (char *)"--mqtt-url";
	argv[argc++] = url;
	argv[argc++] = (char *)"--mqtt-user";
	argv[argc++] = (char *)bin;
	argv[argc++] = (char *)"--mqtt-password-file";
	argv[argc++] = pass;
	if (is_service_with_db(bin)) {
		argv[argc++] = (char *)"--db";
		argv[argc++] = db;
	}
	if (strcmp(bin, "order-service") == 0) {
		snprintf(http, sizeof(http), "%d", s->http_port);
		snprintf(hist, sizeof(hist), "http://127.0.0.1:%d", s->history_port);
		argv[argc++] = (char *)"--http-port";
		argv[argc++] = http;
		argv[argc++] = (char *)"--history-url";
		argv[argc++] = hist;
		argv[argc++] = (char *)"--token-secret-file";
		argv[argc++] = toksecret;
		argv[argc++] = (char *)"--import-users";
		argv[argc++] = passwd;
		argv[argc++] = (char *)"--acl-file";
		argv[argc++] = aclfile;
		argv[argc++] = (char *)"--admin-secret-file";
		argv[argc++] = adminsecret;
		argv[argc++] = (char *)"--history-secret-file";
		argv[argc++] = histsecret;
	} else if (strcmp(bin, "notifier") == 0) {
		snprintf(hist, sizeof(hist), "%s", "--callback-secret-file");
		argv[argc++] = hist;
		argv[argc++] = cbsecret;
	} else if (strcmp(bin, "order-history") == 0) {
		snprintf(http, sizeof(http), "%d", s->history_port);
		argv[argc++] = (char *)"--http-port";
		argv[argc++] = http;
		argv[argc++] = (char *)"--history-secret-file";
		argv[argc++] = histsecret;
	}
	va_start(ap, bin);
	while ((a = va_arg(ap, const char *)) != NULL && argc < 39)
		argv[argc++] = (char *)a;
	va_end(ap);
	argv[argc] = NULL;

	for (int i = 0; i < argc; i++)
		p->argv[i] = strdup(argv[i]);
	p->argv[argc] = NULL;
	s->nprocs++;
	return proc_start(s, p) == 0 ? idx : -1;
}

int
h_restart(struct stack *s, const char *name, int sig)
{
	for (int i = 0; i < s->nprocs; i++) {
		struct h_proc *p = &s->procs[i];
		if (strcmp(p->name, name) != 0)
			continue;
		if (p->pid > 0) {
			kill(p->pid, sig);
			reap(p->pid, 5000);
			p->pid = 0;
		}
		return proc_start(s, p);
	}
	return -1;
}

void
h_signal(struct stack *s, const char *name, int sig)
{
	for (int i = 0; i < s->nprocs; i++) {
		struct h_proc *p = &s->procs[i];
		if (p->pid > 0 && strcmp(p->name, name) == 0) {
			kill(p->pid, sig);
			if (sig == SIGTERM || sig == SIGKILL) {
				reap(p->pid, 5000);
				p->pid = 0;
			}
		}
	}
}

int
h_wait_log(struct stack *s, const char *name, const char *needle, int count, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;

	for (int i = 0; i < s->nprocs; i++) {
		if (strcmp(s->procs[i].name, name) != 0)
			continue;
		do {
			if (count_in_file(s->procs[i].log, needle) >= count)
				return 0;
			sleep_ms(20);
		} while (mono_ms() < deadline);
		return -1;
	}
	return -1;
}

int
h_wait_broker_log(struct stack *s, const char *needle, int count, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	char log[sizeof(s->dir) + 20];

	snprintf(log, sizeof(log), "%s/mosquitto.log", s->dir);
	do {
		if (count_in_file(log, needle) >= count)
			return 0;
		sleep_ms(20);
	} while (mono_ms() < deadline);
	return -1;
}

const char *
h_password(struct stack *s, const char *user)
{
	static char buf[256];
	char path[600], *text, *line, *save = NULL;

	snprintf(path, sizeof(path), "%s/secrets/%s.pass", s->dir, user);
	if ((text = file_read_small(path, 255)) != NULL) {
		snprintf(buf, sizeof(buf), "%s", text);
		free(text);
		return buf;
	}
	snprintf(path, sizeof(path), "%s/broker-config/dev/users.txt", root());
	if ((text = file_read_small(path, 1 << 16)) == NULL)
		return NULL;
	buf[0] = '\0';
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		size_t n = strlen(user);
		if (strncmp(line, user, n) == 0 && line[n] == ':') {
			snprintf(buf, sizeof(buf), "%s", line + n + 1);
			break;
		}
	}
	free(text);
	return buf[0] != '\0' ? buf : NULL;
}

static struct mq *
client(struct stack *s, const char *user, const char *client_id, mq_handler h, void *arg, const char *filter)
{
	struct mq_config cfg;
	char url[64], err[512] = "cannot declare the subscription";
	struct mq *mq;

	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", s->port);
	memset(&cfg, 0, sizeof(cfg));
	cfg.url = url;
	cfg.client_id = client_id;
	cfg.username = user;
	cfg.password = h_password(s, user);
	cfg.clean_start = 1;
	if ((mq = mq_new(&cfg, h, arg)) == NULL)
		return NULL;
	if ((filter != NULL && mq_subscribe(mq, filter, 1, 0) != 0) || mq_connect(mq, 5000, err, sizeof(err)) != 0) {
		fprintf(stderr, "harness: %s cannot connect: %s\n", user, err);
		mq_free(mq);
		return NULL;
	}
	return mq;
}

int
h_observer(struct stack *s)
{
	s->observer = client(s, "admin", "test-observer", on_observed, s, "pizza/#");
	return s->observer != NULL ? 0 : -1;
}

static void
ignore(void *arg, const struct mq_message *m)
{
	(void)arg;
	(void)m;
}

int
h_place(struct stack *s, const char *user, const char *sku, int qty, const char *corr)
{
	struct mq *phone = NULL;
	struct mq_publish p;
	char topic[TOPIC_MAX], reply[TOPIC_MAX], body[256], cid[64];

	for (int i = 0; i < s->nphones; i++)
		if (strcmp(s->phone_users[i], user) == 0)
			phone = s->phones[i];
	if (phone == NULL) {
		if (s->nphones >= 8)
			return -1;
		snprintf(cid, sizeof(cid), "test-phone-%s", user);
		if ((phone = client(s, user, cid, ignore, NULL, NULL)) == NULL)
			return -1;
		s->phones[s->nphones] = phone;
		snprintf(s->phone_users[s->nphones], sizeof(s->phone_users[0]), "%s", user);
		s->nphones++;
	}
	topic_new(topic, sizeof(topic), user);
	topic_reply(reply, sizeof(reply), user, "test");
	snprintf(body, sizeof(body), "{\"items\":[{\"sku\":\"%s\",\"qty\":%d}]}", sku, qty);
	memset(&p, 0, sizeof(p));
	p.topic = topic;
	p.payload = body;
	p.len = strlen(body);
	p.qos = 1;
	p.response_topic = reply;
	p.correlation = corr;
	p.correlation_len = strlen(corr);
	return mq_publish(phone, &p);
}

int
h_wait_reply(struct stack *s, const char *corr, char *out, size_t n, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;

	while (mono_ms() < deadline) {
		int found = -1;

		pthread_mutex_lock(&s->lock);
		for (size_t i = 0; i < s->nmsgs; i++) {
			struct h_msg *m = &s->msgs[i];
			if (m->corr != NULL && strcmp(m->corr, corr) == 0 && strstr(m->topic, "/replies/") != NULL) {
				json_t *r = json_loads(m->payload, 0, NULL);
				const char *id = json_string_value(json_object_get(r, "order_id"));
				found = id != NULL ? 0 : 1;
				if (id != NULL)
					snprintf(out, n, "%s", id);
				else
					snprintf(out, n, "%s: %s", json_string_value(json_object_get(r, "error")),
					    json_string_value(json_object_get(r, "detail")));
				json_decref(r);
				break;
			}
		}
		pthread_mutex_unlock(&s->lock);
		if (found >= 0)
			return found;
		sleep_ms(10);
	}
	return -1;
}

static int
match(const struct h_msg *m, const char *filter, const char *order_id, enum event_type type, int status,
    struct event *ev)
{
	char err[256];

	if (filter != NULL && !topic_matches(filter, m->topic))
		return 0;
	if (event_decode(m->payload, m->len, ev, err, sizeof(err)) != 0)
		return 0;
	if (order_id != NULL && strcmp(ev->order_id, order_id) != 0)
		return 0;
	if (type != 0 && ev->type != type)
		return 0;
	if (status != 0 && (int)ev->status != status)
		return 0;
	return 1;
}

int
h_events_on(struct stack *s, const char *filter, const char *order_id, enum event_type type, struct event *out, int n)
{
	struct event ev;
	int k = 0;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->nmsgs; i++)
		if (match(&s->msgs[i], filter, order_id, type, 0, &ev)) {
			if (k < n)
				out[k] = ev;
			k++;
		}
	pthread_mutex_unlock(&s->lock);
	return k;
}

int
h_events(struct stack *s, const char *order_id, enum event_type type, struct event *out, int n)
{
	return h_events_on(s, NULL, order_id, type, out, n);
}

int
h_count_events_on(struct stack *s, const char *filter, const char *order_id, enum event_type type, int status)
{
	struct event ev;
	int k = 0;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->nmsgs; i++)
		k += match(&s->msgs[i], filter, order_id, type, status, &ev);
	pthread_mutex_unlock(&s->lock);
	return k;
}

int
h_count_events(struct stack *s, const char *order_id, enum event_type type, int status)
{
	return h_count_events_on(s, NULL, order_id, type, status);
}

int
h_wait_events_on(struct stack *s, const char *filter, const char *order_id, enum event_type type, int status,
    int want, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	int k;

	while ((k = h_count_events_on(s, filter, order_id, type, status)) < want && mono_ms() < deadline)
		sleep_ms(20);
	return k;
}

int
h_wait_events(struct stack *s, const char *order_id, enum event_type type, int status, int want, int timeout_ms)
{
	return h_wait_events_on(s, NULL, order_id, type, status, want, timeout_ms);
}

int
h_count_topic(struct stack *s, const char *topic)
{
	int k = 0;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->nmsgs; i++)
		k += strcmp(s->msgs[i].topic, topic) == 0;
	pthread_mutex_unlock(&s->lock);
	return k;
}

int
h_run(struct stack *s, const char *password, char **out, char *const argv[])
{
	char path[600], url[64];
	int fds[2], st;
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	pid_t pid;

	snprintf(path, sizeof(path), "%s/%s", bindir(), argv[0]);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", s->port);
	if (buf == NULL || pipe(fds) != 0) {
		free(buf);
		return -1;
	}
	if ((pid = fork()) == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		close(fds[1]);
		setenv("PIZZA_MQTT_URL", url, 1);
		if (password != NULL)
			setenv("PIZZA_PASSWORD", password, 1);
		else
			unsetenv("PIZZA_PASSWORD");
		close_range(3, ~0U, 0);
		execv(path, argv);
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		ssize_t r;
		if (len + 1 >= cap) {
			char *n = realloc(buf, cap * 2);
			if (n == NULL)
				break;
			buf = n;
			cap *= 2;
		}
		r = read(fds[0], buf + len, cap - len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	close(fds[0]);
	waitpid(pid, &st, 0);
	*out = buf;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

pid_t
h_spawn(struct stack *s, const char *password, char *const argv[], const char *outfile)
{
	char path[600], url[64];
	pid_t pid;

	snprintf(path, sizeof(path), "%s/%s", bindir(), argv[0]);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", s->port);
	if ((pid = fork()) == 0) {
		int fd = open(outfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		setenv("PIZZA_MQTT_URL", url, 1);
		if (password != NULL)
			setenv("PIZZA_PASSWORD", password, 1);
		close_range(3, ~0U, 0);
		execv(path, argv);
		_exit(127);
	}
	return pid;
}

int
h_collect(pid_t pid, const char *outfile, char **out, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	int st = 0;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			break;
		if (mono_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			st = -1;
			break;
		}
		sleep_ms(20);
	}
	*out = file_read_small(outfile, 1 << 24);
	if (*out == NULL)
		*out = strdup("");
	return st == -1 ? -1 : (WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

int
h_alive(struct stack *s, const char *name)
{
	for (int i = 0; i < s->nprocs; i++)
		if (strcmp(s->procs[i].name, name) == 0 && s->procs[i].pid > 0)
			return waitpid(s->procs[i].pid, NULL, WNOHANG) == 0;
	return 0;
}

static int published;

static void
on_published(void *arg, int ok)
{
	(void)arg;
	__atomic_store_n(&published, ok ? 1 : -1, __ATOMIC_SEQ_CST);
}

int
h_publish(struct stack *s, const char *account, const char *topic, const void *payload, size_t len)
{
	struct mq_publish p;
	struct mq *c;
	char cid[64];
	int64_t deadline;
	int rc = -1;

	snprintf(cid, sizeof(cid), "test-pub-%s", account);
	if ((c = client(s, account, cid, ignore, NULL, NULL)) == NULL)
		return -1;
	memset(&p, 0, sizeof(p));
	p.topic = topic;
	p.payload = payload;
	p.len = len;
	p.qos = 1;
	p.done = on_published;
	__atomic_store_n(&published, 0, __ATOMIC_SEQ_CST);
	if (mq_publish(c, &p) == 0) {
		deadline = mono_ms() + 5000;
		while (__atomic_load_n(&published, __ATOMIC_SEQ_CST) == 0 && mono_ms() < deadline)
			sleep_ms(5);
		rc = __atomic_load_n(&published, __ATOMIC_SEQ_CST) == 1 ? 0 : -1;
	}
	mq_disconnect(c, 1000);
	mq_free(c);
	return rc;
}

const char *
h_token(struct stack *s, const char *user)
{
	static char tok[TOKEN_MAX];
	static char made[256][sizeof(s->dir) + 40]; /* "<dir>|<user>": accounts this process created */
	static int nmade;
	static pthread_mutex_t made_lock = PTHREAD_MUTEX_INITIALIZER;
	int64_t now = now_ms() / 1000;
	struct token_claims c = { .issued = now, .expiry = now + 3600 }; /* device "": no device */
	char path[600], key[sizeof(made[0])], *secret;
	int known = 0;

	/* a token is only good for an account: create it, as pizza-admin would, unless done already */
	snprintf(key, sizeof(key), "%s|%s", s->dir, user != NULL ? user : "");
	pthread_mutex_lock(&made_lock);
	for (int i = 0; i < nmade && !known; i++)
		known = strcmp(made[i], key) == 0;
	pthread_mutex_unlock(&made_lock);
	if (!known && user != NULL && s->http_port > 0) {
		char url[128], auth[300], body[200], *admin;
		const char *headers[3] = { auth, "Content-Type: application/json", NULL };
		struct h_reply r;
		long st;

		snprintf(path, sizeof(path), "%s/secrets/admin.secret", s->dir);
		if ((admin = file_read_small(path, 255)) != NULL) {
			snprintf(auth, sizeof(auth), "Authorization: Bearer %s", admin);
			snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/admin/users", s->http_port);
			snprintf(body, sizeof(body), "{\"user_id\":\"%s\",\"password\":\"harness-pass-0123456789\"}", user);
			memset(&r, 0, sizeof(r));
			st = h_http("POST", url, headers, body, &r);
			h_reply_free(&r);
			free(admin);
			if (st == 201 || st == 409) {
				pthread_mutex_lock(&made_lock);
				if (nmade < 256)
					snprintf(made[nmade++], sizeof(made[0]), "%s", key);
				pthread_mutex_unlock(&made_lock);
			}
		}
	}
	snprintf(path, sizeof(path), "%s/secrets/token.secret", s->dir);
	if ((secret = file_read_small(path, 255)) == NULL || user == NULL ||
	    str_copy(c.user, sizeof(c.user), user) != 0 || token_issue(secret, &c, tok) != 0)
		tok[0] = '\0';
	free(secret);
	return tok;
}

int64_t
h_sql_int(struct stack *s, const char *db, const char *sql, const char *arg)
{
	char path[600];
	sqlite3 *h = NULL;
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	snprintf(path, sizeof(path), "%s/data/%s.db", s->dir, db);
	if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK) {
		sqlite3_busy_timeout(h, 2000);
		if (arg != NULL)
			sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			v = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	sqlite3_close(h);
	return v;
}

/* Prints and counts sanitizer reports in a log. */
static int
sanitizer_findings(const char *log)
{
	static const char *const marks[] = { "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", NULL };
	char *text = file_read_small(log, 1 << 24);
	int n = 0;

	for (int i = 0; text != NULL && marks[i] != NULL; i++) {
		char *at = strstr(text, marks[i]);
		if (at != NULL) {
			fprintf(stderr, "harness: sanitizer finding in %s:\n%.2000s\n", log, at);
			n++;
		}
	}
	free(text);
	return n;
}

int
h_stack_stop(struct stack *s)
{
	int findings = 0;

	for (int i = 0; i < s->nphones; i++) {
		mq_disconnect(s->phones[i], 500);
		mq_free(s->phones[i]);
	}
	if (s->observer != NULL) {
		mq_disconnect(s->observer, 500);
		mq_free(s->observer);
	}
	for (int i = 0; i < s->nprocs; i++)
		if (s->procs[i].pid > 0)
			kill(s->procs[i].pid, SIGTERM);
	for (int i = 0; i < s->nprocs; i++)
		if (s->procs[i].pid > 0)
			reap(s->procs[i].pid, 10000);
	if (s->broker > 0) {
		kill(s->broker, SIGTERM);
		reap(s->broker, 5000);
	}
	for (int i = 0; i < s->nprocs; i++)
		findings += sanitizer_findings(s->procs[i].log);
	for (int i = 0; i < s->nprocs; i++)
		for (int k = 0; s->procs[i].argv[k] != NULL; k++)
			free(s->procs[i].argv[k]);
	for (size_t i = 0; i < s->nmsgs; i++) {
		free(s->msgs[i].topic);
		free(s->msgs[i].payload);
		free(s->msgs[i].corr);
	}
	free(s->msgs);
	pthread_mutex_destroy(&s->lock);
	return findings > 0 ? -1 : 0;
}

/* The inodes of pid's sockets into ino[] (at most n). Returns how many, or -1. */
static int
socket_inodes(pid_t pid, unsigned long *ino, int n)
{
	char path[64], link[64];
	struct dirent *d;
	DIR *dir;
	int k = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	if ((dir = opendir(path)) == NULL)
		return -1;
	while ((d = readdir(dir)) != NULL && k < n) {
		char fd[sizeof(path) + 300];
		ssize_t len;

		snprintf(fd, sizeof(fd), "%s/%s", path, d->d_name);
		if ((len = readlink(fd, link, sizeof(link) - 1)) <= 0)
			continue;
		link[len] = '\0';
		if (sscanf(link, "socket:[%lu]", &ino[k]) == 1)
			k++;
	}
	closedir(dir);
	return k;
}

/* Appends the LISTEN sockets of /proc/<pid>/net/<table> (tcp or tcp6) whose inode is in ino[] to out[]. */
static void
listening_in(pid_t pid, const char *table, const unsigned long *ino, int nino, struct h_listen *out, int n, int *k)
{
	char path[64], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/net/%s", (int)pid, table);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		char local[40];
		unsigned port, state;
		unsigned long inode;
		int mine = 0;

		/* sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode */
		if (sscanf(line, " %*s %39[0-9A-Fa-f]:%x %*s %x %*s %*s %*s %*s %*s %lu", local, &port, &state, &inode) != 4 ||
		    state != 0x0A /* TCP_LISTEN */)
			continue;
		for (int i = 0; i < nino; i++)
			mine |= ino[i] == inode;
		if (!mine)
			continue;
		if (*k < n) {
			struct h_listen *l = &out[*k];
			uint32_t w[4] = { 0, 0, 0, 0 };

			/* the kernel prints each 32-bit word of the address as it lies in memory, in hex */
			if (strlen(local) == 8) {
				struct in_addr a;
				sscanf(local, "%8x", &w[0]);
				a.s_addr = w[0];
				inet_ntop(AF_INET, &a, l->addr, sizeof(l->addr));
				l->loopback = a.s_addr == htonl(INADDR_LOOPBACK);
			} else {
				struct in6_addr a;
				sscanf(local, "%8x%8x%8x%8x", &w[0], &w[1], &w[2], &w[3]);
				memcpy(&a, w, sizeof(a));
				inet_ntop(AF_INET6, &a, l->addr, sizeof(l->addr));
				l->loopback = IN6_IS_ADDR_LOOPBACK(&a) ||
				    (IN6_IS_ADDR_V4MAPPED(&a) && w[3] == htonl(INADDR_LOOPBACK));
			}
			l->port = (int)port;
		}
		(*k)++;
	}
	fclose(f);
}

int
h_listening(pid_t pid, struct h_listen *out, int n)
{
	unsigned long ino[1024];
	int nino = socket_inodes(pid, ino, 1024), k = 0;

	if (nino < 0)
		return -1;
	listening_in(pid, "tcp", ino, nino, out, n, &k);
	listening_in(pid, "tcp6", ino, nino, out, n, &k);
	return k;
}

/* ---- a private PostgreSQL ---------------------------------------------- */

/* Runs argv as pg's user and waits (up to ms); its exit status, or -1. */
static int
pg_run(const struct h_pg *pg, char *const argv[], const char *log, int ms)
{
	pid_t pid = spawn_as(argv, log, pg->uid, pg->gid);
	int64_t deadline = mono_ms() + ms;
	int st;

	while (pid > 0 && mono_ms() < deadline) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		sleep_ms(20);
	}
	if (pid > 0)
		reap(pid, 0);
	return -1;
}

/* Starts postgres on pg's cluster and waits until it accepts connections (an event, with a deadline). */
static int
pg_serve(struct h_pg *pg)
{
	char bin[300], isready[300], data[700], log[700], port[16];
	char *argv[] = { bin, (char *)"-D", data, (char *)"-p", port, (char *)"-k", pg->dir, (char *)"-c",
		(char *)"listen_addresses=127.0.0.1", (char *)"-c", (char *)"max_connections=40", (char *)"-c",
		(char *)"fsync=off", /* a test's cluster: durability across an OS crash is not what it checks */
		NULL };
	char *probe[] = { isready, (char *)"-q", (char *)"-h", (char *)"127.0.0.1", (char *)"-p", port, (char *)"-t",
		(char *)"1", NULL };
	int64_t deadline;

	snprintf(bin, sizeof(bin), "%s/postgres", pg->bindir);
	snprintf(isready, sizeof(isready), "%s/pg_isready", pg->bindir);
	snprintf(data, sizeof(data), "%s/data", pg->dir);
	snprintf(log, sizeof(log), "%s/postgres.log", pg->dir);
	snprintf(port, sizeof(port), "%d", pg->port);
	pg->pid = spawn_as(argv, log, pg->uid, pg->gid);
	deadline = mono_ms() + 20000;
	while (mono_ms() < deadline) {
		if (waitpid(pg->pid, NULL, WNOHANG) == pg->pid) {
			fprintf(stderr, "harness: postgres exited at start; see %s\n", log);
			pg->pid = 0;
			return -1;
		}
		/* pg_isready exits 0 once the server accepts connections (1 while it starts up) */
		if (pg_run(pg, probe, log, 3000) == 0)
			return 0;
		sleep_ms(20);
	}
	fprintf(stderr, "harness: postgres not ready after 20 s; see %s\n", log);
	return -1;
}

int
h_pg_start(struct stack *s, struct h_pg *pg)
{
	char initdb[300], data[700], pwfile[700], passfile[700], log[700], pw[33], pwopt[720];
	unsigned char rnd[16];
	glob_t g;
	FILE *f;
	int fd, rc;

	memset(pg, 0, sizeof(*pg));
	/* Debian's server binaries: /usr/lib/postgresql/<version>/bin, the newest when several */
	if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0 || g.gl_pathc == 0) {
		fprintf(stderr, "harness: PostgreSQL is not installed: sudo apt-get install -y postgresql\n");
		return -1;
	}
	snprintf(pg->bindir, sizeof(pg->bindir), "%.*s", (int)(strlen(g.gl_pathv[g.gl_pathc - 1]) - strlen("/initdb")),
	    g.gl_pathv[g.gl_pathc - 1]);
	globfree(&g);
	pg->uid = getuid();
	pg->gid = getgid();
	if (pg->uid == 0) {
		struct passwd *pw_nobody = getpwnam("nobody");
		if (pw_nobody == NULL) {
			fprintf(stderr, "harness: PostgreSQL refuses root and there is no user nobody to run it as\n");
			return -1;
		}
		pg->uid = pw_nobody->pw_uid;
		pg->gid = pw_nobody->pw_gid;
	}
	snprintf(pg->dir, sizeof(pg->dir), "%s/pg", s->dir);
	snprintf(data, sizeof(data), "%s/data", pg->dir);
	snprintf(pwfile, sizeof(pwfile), "%s/initdb.pw", pg->dir);
	snprintf(passfile, sizeof(passfile), "%s/pgpass", pg->dir);
	snprintf(log, sizeof(log), "%s/initdb.log", pg->dir);
	if (mkdir(pg->dir, 0700) != 0 || chown(pg->dir, pg->uid, pg->gid) != 0) {
		fprintf(stderr, "harness: cannot make %s for postgres: %s\n", pg->dir, strerror(errno));
		return -1;
	}
	/* a generated password: in a file initdb reads (then removed) and in the clients' passfile (0600) */
	if ((fd = open("/dev/urandom", O_RDONLY)) < 0 || read(fd, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(pw + 2 * i, 3, "%02x", rnd[i]);
	if ((fd = open(pwfile, O_WRONLY | O_CREAT | O_EXCL, 0600)) < 0 || write(fd, pw, strlen(pw)) < 0 ||
	    fchown(fd, pg->uid, pg->gid) != 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	pg->port = free_port();
	/* libpq ignores a passfile others may read */
	if ((fd = open(passfile, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0 || (f = fdopen(fd, "w")) == NULL) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	fprintf(f, "127.0.0.1:%d:*:pizza:%s\n", pg->port, pw); /* any database: createdb connects to another */
	fclose(f);
	snprintf(pg->url, sizeof(pg->url), "postgresql://pizza@127.0.0.1:%d/pizza?passfile=%s", pg->port, passfile);

	snprintf(initdb, sizeof(initdb), "%s/initdb", pg->bindir);
	snprintf(pwopt, sizeof(pwopt), "--pwfile=%s", pwfile);
	{
		char *argv[] = { initdb, (char *)"-D", data, (char *)"-U", (char *)"pizza", pwopt,
			(char *)"--auth=scram-sha-256", (char *)"-E", (char *)"UTF8", (char *)"--locale=C.UTF-8",
			(char *)"--no-sync", NULL };
		rc = pg_run(pg, argv, log, 60000);
	}
	unlink(pwfile);
	if (rc != 0) {
		fprintf(stderr, "harness: initdb failed (%d); see %s\n", rc, log);
		return -1;
	}
	if (pg_serve(pg) != 0)
		return -1;
	{
		/* the services' database: pizza, owned by pizza */
		char createdb[300], portarg[16];
		char *argv[] = { createdb, (char *)"-w", (char *)"-h", (char *)"127.0.0.1", (char *)"-p", portarg, (char *)"-U",
			(char *)"pizza", (char *)"pizza", NULL };
		snprintf(createdb, sizeof(createdb), "%s/createdb", pg->bindir);
		snprintf(portarg, sizeof(portarg), "%d", pg->port);
		setenv("PGPASSFILE", passfile, 1); /* createdb and psql (run by root) find the password there */
		if (pg_run(&(struct h_pg){ .uid = getuid(), .gid = getgid() }, argv, log, 20000) != 0) {
			fprintf(stderr, "harness: createdb failed; see %s\n", log);
			return -1;
		}
	}
	return 0;
}

void
h_pg_stop(struct h_pg *pg)
{
	if (pg->pid > 0) {
		kill(pg->pid, SIGINT); /* fast shutdown: sessions are ended, then a clean stop */
		reap(pg->pid, 10000);
		pg->pid = 0;
	}
}

int
h_pg_restart(struct h_pg *pg)
{
	h_pg_stop(pg);
	return pg_serve(pg);
}

int64_t
h_pg_int(struct h_pg *pg, const char *sql)
{
	char psql[300], out[700], *text;
	char *argv[] = { psql, (char *)"-w", (char *)"-X", (char *)"-q", (char *)"-t", (char *)"-A", (char *)"-d", pg->url,
		(char *)"-c", (char *)sql, NULL };
	int64_t v = -1;

	snprintf(psql, sizeof(psql), "%s/psql", pg->bindir);
	snprintf(out, sizeof(out), "%s/psql.out", pg->dir);
	unlink(out);
	if (pg_run(&(struct h_pg){ .uid = getuid(), .gid = getgid() }, argv, out, 10000) == 0 &&
	    (text = file_read_small(out, 4096)) != NULL) {
		char *end;
		long long n = strtoll(text, &end, 10);
		if (end != text && (*end == '\n' || *end == '\0'))
			v = n;
		free(text);
	}
	return v;
}
