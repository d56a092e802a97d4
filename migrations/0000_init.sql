CREATE SEQUENCE "public"."sip_number_seq" INCREMENT BY 1 MINVALUE 5926100001 MAXVALUE 9999999999 START WITH 5926100001 CACHE 1;--> statement-breakpoint
CREATE TABLE "accounts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"role" text NOT NULL,
	"name" text NOT NULL,
	"email" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "accounts_email_unique" UNIQUE("email")
);
--> statement-breakpoint
CREATE TABLE "api_tokens" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"account_id" uuid NOT NULL,
	"token_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone,
	CONSTRAINT "api_tokens_token_hash_unique" UNIQUE("token_hash")
);
--> statement-breakpoint
CREATE TABLE "mac_library" (
	"mac" varchar(12) PRIMARY KEY NOT NULL,
	"installer_id" uuid NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_seen_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "devices" (
	"mac" varchar(12) PRIMARY KEY NOT NULL,
	"installer_id" uuid NOT NULL,
	"name" text NOT NULL,
	"type" text NOT NULL,
	"network_group" integer DEFAULT 1 NOT NULL,
	"location" text,
	"relays" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"allow_monitoring" boolean DEFAULT false NOT NULL,
	"sip_number" varchar(10) NOT NULL,
	"sip_password" text NOT NULL,
	"status" text DEFAULT 'offline' NOT NULL,
	"last_connected_at" timestamp with time zone,
	"ip" text,
	"model" text,
	"firmware" text,
	"config_hash" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "devices_sip_number_unique" UNIQUE("sip_number")
);
--> statement-breakpoint
ALTER TABLE "api_tokens" ADD CONSTRAINT "api_tokens_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "mac_library" ADD CONSTRAINT "mac_library_installer_id_accounts_id_fk" FOREIGN KEY ("installer_id") REFERENCES "public"."accounts"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "devices" ADD CONSTRAINT "devices_mac_mac_library_mac_fk" FOREIGN KEY ("mac") REFERENCES "public"."mac_library"("mac") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "devices" ADD CONSTRAINT "devices_installer_id_accounts_id_fk" FOREIGN KEY ("installer_id") REFERENCES "public"."accounts"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "api_tokens_account_idx" ON "api_tokens" USING btree ("account_id");--> statement-breakpoint
CREATE INDEX "mac_library_installer_idx" ON "mac_library" USING btree ("installer_id","created_at");--> statement-breakpoint
CREATE INDEX "devices_installer_idx" ON "devices" USING btree ("installer_id","created_at");--> statement-breakpoint
CREATE INDEX "devices_status_idx" ON "devices" USING btree ("status");