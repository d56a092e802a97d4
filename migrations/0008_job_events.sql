CREATE TABLE "job_event_cursors" (
	"sink" text PRIMARY KEY NOT NULL,
	"last_tx" "xid8" DEFAULT '0'::xid8 NOT NULL,
	"last_id" bigint DEFAULT 0 NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "job_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tx" "xid8" DEFAULT pg_current_xact_id() NOT NULL,
	"job_id" uuid NOT NULL,
	"mac" varchar(12) NOT NULL,
	"kind" text NOT NULL,
	"batch_id" uuid,
	"type" text NOT NULL,
	"from_state" text,
	"to_state" text NOT NULL,
	"stage" text,
	"progress" integer NOT NULL,
	"attempts" integer NOT NULL,
	"error" jsonb,
	"result" jsonb,
	"actor" text NOT NULL,
	"at" timestamp (6) with time zone NOT NULL,
	"delivered_at" timestamp (6) with time zone
);
--> statement-breakpoint
ALTER TABLE "upgrades" ADD COLUMN "executed_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "job_events_order_idx" ON "job_events" USING btree ("tx","id");--> statement-breakpoint
-- Wakes the job event follower when a transaction that wrote outbox rows commits (NOTIFY is delivered at commit, once per transaction).
CREATE FUNCTION "job_events_notify"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_notify('job_events', ''); RETURN NULL; END $$;--> statement-breakpoint
CREATE TRIGGER "job_events_notify" AFTER INSERT ON "job_events" FOR EACH STATEMENT EXECUTE FUNCTION "job_events_notify"();
