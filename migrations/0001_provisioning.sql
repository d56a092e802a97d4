CREATE TABLE "audit_log" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"at" timestamp (6) with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"mac" varchar(12),
	"job_id" uuid,
	"batch_id" uuid,
	"details" jsonb DEFAULT '{}'::jsonb NOT NULL
);
--> statement-breakpoint
CREATE TABLE "autop_batches" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"mode" text NOT NULL,
	"lines" jsonb NOT NULL,
	"device_count" integer NOT NULL,
	"installer_id" uuid NOT NULL,
	"requested_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "jobs" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"seq" bigserial NOT NULL,
	"kind" text NOT NULL,
	"mac" varchar(12) NOT NULL,
	"installer_id" uuid NOT NULL,
	"batch_id" uuid,
	"state" text DEFAULT 'queued' NOT NULL,
	"progress" integer DEFAULT 0 NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"params" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"error" jsonb,
	"requested_by" uuid,
	"created_at" timestamp (6) with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"delivered_at" timestamp with time zone,
	"deadline_at" timestamp with time zone,
	"finished_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "regular_autop" (
	"mac" varchar(12) PRIMARY KEY NOT NULL,
	"lines" jsonb NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "connect_type" text DEFAULT 'udp' NOT NULL;--> statement-breakpoint
ALTER TABLE "autop_batches" ADD CONSTRAINT "autop_batches_requested_by_accounts_id_fk" FOREIGN KEY ("requested_by") REFERENCES "public"."accounts"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_requested_by_accounts_id_fk" FOREIGN KEY ("requested_by") REFERENCES "public"."accounts"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "regular_autop" ADD CONSTRAINT "regular_autop_mac_devices_mac_fk" FOREIGN KEY ("mac") REFERENCES "public"."devices"("mac") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "audit_mac_idx" ON "audit_log" USING btree ("mac","at");--> statement-breakpoint
CREATE INDEX "audit_job_idx" ON "audit_log" USING btree ("job_id");--> statement-breakpoint
CREATE INDEX "jobs_mac_seq_idx" ON "jobs" USING btree ("mac","seq");--> statement-breakpoint
CREATE INDEX "jobs_state_idx" ON "jobs" USING btree ("state");--> statement-breakpoint
CREATE INDEX "jobs_batch_idx" ON "jobs" USING btree ("batch_id");--> statement-breakpoint
CREATE INDEX "jobs_installer_idx" ON "jobs" USING btree ("installer_id","seq");