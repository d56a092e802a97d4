CREATE TABLE "idempotent_requests" (
	"account_id" uuid NOT NULL,
	"key" text NOT NULL,
	"fingerprint" varchar(64) NOT NULL,
	"body" jsonb,
	"job_ids" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "idempotent_requests_account_id_key_pk" PRIMARY KEY("account_id","key")
);
--> statement-breakpoint
CREATE TABLE "device_documents" (
	"mac" varchar(12) NOT NULL,
	"sha256" varchar(64) NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp (6) with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "device_documents_mac_sha256_pk" PRIMARY KEY("mac","sha256")
);
--> statement-breakpoint
CREATE TABLE "documents" (
	"sha256" varchar(64) PRIMARY KEY NOT NULL,
	"media_type" text NOT NULL,
	"size" integer NOT NULL,
	"body" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "deployment" (
	"singleton" smallint PRIMARY KEY DEFAULT 1 NOT NULL,
	"id" uuid DEFAULT gen_random_uuid() NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "idempotent_requests" ADD CONSTRAINT "idempotent_requests_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "device_documents" ADD CONSTRAINT "device_documents_sha256_documents_sha256_fk" FOREIGN KEY ("sha256") REFERENCES "public"."documents"("sha256") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "idempotent_requests_created_idx" ON "idempotent_requests" USING btree ("created_at");--> statement-breakpoint
CREATE INDEX "device_documents_mac_name_idx" ON "device_documents" USING btree ("mac","name","created_at");--> statement-breakpoint
CREATE INDEX "jobs_unfinished_idx" ON "jobs" USING btree ("mac","seq") WHERE state NOT IN ('succeeded', 'failed', 'expired', 'canceled');